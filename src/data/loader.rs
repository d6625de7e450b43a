//! Turning a [`Dataset`] into batches: seeded shuffling, batching, and
//! per-channel normalisation of the `u8` pixels into an `f32` tensor
//! `x [N, C, H, W]` with `targets [N]`; training batches also get their
//! augmentation (see [`Augment`]) while they are written.
//!
//! The order of an epoch depends only on the seed and the epoch number, so
//! a run can resume at any epoch and see the same batches. A [`Loader`]
//! builds a run's training batches on a background thread while the previous
//! batch trains, passing two buffers back and forth, so it allocates nothing
//! once both buffers have their size.

use std::ops::RangeInclusive;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::Scope;

use serde::{Deserialize, Serialize};

use super::augment::{place_plane, Augment, Placement};
use super::Dataset;
use crate::rng::Rng;
use crate::{Error, Result, Tensor};

/// The random stream purposes `SHUFFLE_STREAM + epoch` order the epochs;
/// the tag ("shuf" in ASCII, in the upper half) keeps them apart from the
/// streams of other purposes.
pub const SHUFFLE_STREAM: u64 = 0x7368_7566 << 32;

/// Per-channel normalisation `x = (v / max_value - mean[c]) / std[c]`, with
/// `mean` and `std` in units of the `[0, 1]`-scaled pixel, as
/// `torchvision.transforms.Normalize` after `ToTensor`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Mean of each channel.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel; never 0.
    pub std: Vec<f32>,
}

impl Normalize {
    /// Mean 0, std 1: pixels only scaled to `[0, 1]`.
    pub fn identity(channels: usize) -> Normalize {
        Normalize { mean: vec![0.0; channels], std: vec![1.0; channels] }
    }

    /// Per-channel mean and population standard deviation of `ds`'s
    /// scaled pixels; a channel that never varies gets std 1.
    pub fn measure(ds: &Dataset) -> Normalize {
        // Exact per-channel histograms of the u8 values; the moments then
        // come from 256 terms each, in f64.
        let [c, h, w] = ds.sample_shape();
        let plane = h * w;
        let mut counts = vec![[0u64; 256]; c];
        for image in ds.images().chunks_exact(c * plane) {
            for (hist, pixels) in counts.iter_mut().zip(image.chunks_exact(plane)) {
                for &v in pixels {
                    hist[v as usize] += 1;
                }
            }
        }

        // mean = Σ count·s / n and var = Σ count·(s − mean)² / n over the
        // scaled values s = v / max_value.
        let scale = 1.0 / f64::from(ds.max_value());
        let n = (ds.len() * plane) as f64;
        let (mut mean, mut std) = (Vec::with_capacity(c), Vec::with_capacity(c));
        for hist in &counts {
            let scaled = || hist.iter().enumerate().map(|(v, &k)| (v as f64 * scale, k as f64));
            let m = if n > 0.0 { scaled().map(|(s, k)| k * s).sum::<f64>() / n } else { 0.0 };
            let var = if n > 0.0 {
                scaled().map(|(s, k)| k * (s - m).powi(2)).sum::<f64>() / n
            } else {
                0.0
            };
            let sd = var.sqrt() as f32;
            mean.push(m as f32);
            std.push(if sd > 0.0 { sd } else { 1.0 });
        }
        Normalize { mean, std }
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }
}

/// The order of the samples `0..n` in `epoch`: a permutation that depends
/// only on `seed` and `epoch`, drawn from stream `SHUFFLE_STREAM + epoch`.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order = Vec::with_capacity(n);
    shuffle_into(&mut order, n, seed, epoch);
    order
}

/// Makes `order` the [`epoch_order`] of `n` samples, reusing its allocation.
fn shuffle_into(order: &mut Vec<usize>, n: usize, seed: u64, epoch: usize) {
    order.clear();
    order.extend(0..n);
    Rng::new(seed, SHUFFLE_STREAM.wrapping_add(epoch as u64)).shuffle(order);
}

/// Writes the samples `indices` of `ds` into `x` as `[b, c, h, w]`, scaled
/// and normalised by `norm`, and their labels into `targets`. The images
/// are taken as they are, never augmented: the batches of evaluation and
/// prediction ([`BatchPlan::fill`] builds training batches).
///
/// `x` is resized in place and `targets` cleared and refilled, so a batch of
/// a size seen before allocates nothing.
///
/// # Shapes
///
/// `x`: any on entry, `[indices.len(), c, h, w]` on return; `targets`:
/// `indices.len()`.
///
/// # Errors
///
/// [`Error::InvalidArgument`] when `norm` has another number of channels than
/// `ds`, or an index is not below `ds.len()`.
pub fn fill_batch(
    ds: &Dataset,
    indices: &[usize],
    norm: &Normalize,
    x: &mut Tensor,
    targets: &mut Vec<i64>,
) -> Result<()> {
    fill_placed(ds, indices, norm, |_| Placement::IDENTITY, x, targets)
}

/// [`fill_batch`] with sample `i` written through `place(i)`.
fn fill_placed(
    ds: &Dataset,
    indices: &[usize],
    norm: &Normalize,
    place: impl Fn(usize) -> Placement,
    x: &mut Tensor,
    targets: &mut Vec<i64>,
) -> Result<()> {
    // The channel count and indices come from the caller; check them once.
    let [c, h, w] = ds.sample_shape();
    if norm.mean.len() != c || norm.std.len() != c {
        return Err(Error::arg(format!(
            "normalisation has {} means and {} stds, but dataset {} has {c} channels",
            norm.mean.len(),
            norm.std.len(),
            ds.name()
        )));
    }
    if let Some(&i) = indices.iter().find(|&&i| i >= ds.len()) {
        return Err(Error::arg(format!(
            "batch index {i} is outside dataset {} ({} samples)",
            ds.name(),
            ds.len()
        )));
    }

    // One table per channel maps each u8 value to its normalised f32, computed
    // in the same order of operations as ToTensor then Normalize. Padding is
    // pixel value 0, normalised like any other (torchvision pads before
    // ToTensor).
    x.resize(&[indices.len(), c, h, w]);
    let plane = h * w;
    let max = f32::from(ds.max_value());
    let data = x.data_mut();
    for ch in 0..c {
        let (mean, std) = (norm.mean[ch], norm.std[ch]);
        let table: [f32; 256] = std::array::from_fn(|v| (v as f32 / max - mean) / std);
        for (b, &i) in indices.iter().enumerate() {
            let pixels = &ds.image(i)[ch * plane..(ch + 1) * plane];
            let out = &mut data[(b * c + ch) * plane..(b * c + ch + 1) * plane];
            let placement = place(i);
            if placement == Placement::IDENTITY {
                for (o, &v) in out.iter_mut().zip(pixels) {
                    *o = table[v as usize];
                }
            } else {
                place_plane(pixels, out, [h, w], placement, &table);
            }
        }
    }

    // Labels as the class indices cross-entropy takes.
    targets.clear();
    targets.extend(indices.iter().map(|&i| i64::from(ds.label(i))));
    Ok(())
}

/// Everything a run's training batches depend on: the samples, their
/// normalisation and augmentation, the seed and the batch size.
#[derive(Clone, Copy, Debug)]
pub struct BatchPlan<'a> {
    /// The training samples.
    pub dataset: &'a Dataset,
    /// Per-channel statistics the pixels are normalised with.
    pub normalize: &'a Normalize,
    /// Random transforms of each sample.
    pub augment: Augment,
    /// Seed of the shuffling and of the augmentation draws.
    pub seed: u64,
    /// Samples per batch; the last batch of an epoch may be shorter.
    pub batch_size: usize,
    /// Leave out an epoch's last batch when it would hold a single sample,
    /// as a model with batch norm needs (see [`samples_per_epoch`]).
    pub drop_last_single: bool,
}

/// Samples trained on per epoch out of `len`: all of them, as PyTorch's
/// `DataLoader` gives them, except that with `drop_last_single` a last batch
/// of a single sample is dropped. That is for models with batch norm: batch
/// statistics are undefined for one sample, and PyTorch refuses such a
/// batch in training. Which sample is left out changes from epoch to epoch
/// with the shuffle.
pub fn samples_per_epoch(len: usize, batch_size: usize, drop_last_single: bool) -> usize {
    if drop_last_single && len > 1 && batch_size > 1 && len % batch_size == 1 {
        len - 1
    } else {
        len
    }
}

impl BatchPlan<'_> {
    /// Samples trained on per epoch; see [`samples_per_epoch`].
    pub fn samples_per_epoch(&self) -> usize {
        samples_per_epoch(self.dataset.len(), self.batch_size, self.drop_last_single)
    }

    /// Batches per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.samples_per_epoch().div_ceil(self.batch_size.max(1))
    }

    /// Writes the training batch of samples `indices` of `epoch` (1-based)
    /// as [`fill_batch`] does, each sample through its draw
    /// `augment.draw(seed, epoch, index)`; so a sample comes out the same in
    /// whichever batch it is built.
    ///
    /// # Shapes
    ///
    /// As [`fill_batch`].
    ///
    /// # Errors
    ///
    /// As [`fill_batch`].
    pub fn fill(
        &self,
        epoch: usize,
        indices: &[usize],
        x: &mut Tensor,
        targets: &mut Vec<i64>,
    ) -> Result<()> {
        let (augment, seed) = (self.augment, self.seed);
        let place = |i| augment.draw(seed, epoch, i);
        fill_placed(self.dataset, indices, self.normalize, place, x, targets)
    }
}

/// One training batch and where it sits in the run.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Normalised, augmented images, `[n, c, h, w]`.
    pub x: Tensor,
    /// Class indices, `[n]`.
    pub targets: Vec<i64>,
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based step within the epoch.
    pub step: usize,
}

/// Buffers a background loader passes back and forth: one trains while the
/// other is filled.
const BUFFERS: usize = 2;

/// A run's training batches in order, epoch after epoch, each epoch in its
/// [`epoch_order`]. Built on demand on the calling thread
/// ([`Loader::inline`]) or one batch ahead on a background thread
/// ([`Loader::spawn`]); both give the same batches, bit for bit.
pub struct Loader<'a> {
    source: Source<'a>,
    /// Batches not yet handed out.
    remaining: usize,
}

enum Source<'a> {
    /// Each batch is filled when asked for, into the one buffer.
    Inline { cursor: Cursor<'a>, batch: Batch },
    /// Empty buffers go to the loader thread on `free`, full ones (or the
    /// error that stopped it) come back on `full`; `current` is the batch
    /// handed out last.
    Background { free: SyncSender<Batch>, full: Receiver<Result<Batch>>, current: Option<Batch> },
}

impl<'a> Loader<'a> {
    /// Batches of `plan` for `epochs`, each filled when [`Loader::next`] asks
    /// for it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the batch size is 0.
    pub fn inline(plan: BatchPlan<'a>, epochs: RangeInclusive<usize>) -> Result<Loader<'a>> {
        let remaining = count_batches(&plan, &epochs)?;
        let source = Source::Inline { cursor: Cursor::new(plan, epochs), batch: Batch::default() };
        Ok(Loader { source, remaining })
    }

    /// Batches of `plan` for `epochs`, filled on a thread of `scope` while
    /// the previous batch is in use. The thread stops at the end of the run,
    /// at the first error (which [`Loader::next`] returns), or when the
    /// loader is dropped. Should the thread fail to start, batches are
    /// filled inline instead: the same batches, later.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the batch size is 0.
    pub fn spawn<'scope>(
        scope: &'scope Scope<'scope, 'a>,
        plan: BatchPlan<'a>,
        epochs: RangeInclusive<usize>,
    ) -> Result<Loader<'a>> {
        let remaining = count_batches(&plan, &epochs)?;
        let (free, free_rx) = sync_channel::<Batch>(BUFFERS);
        let (full_tx, full) = sync_channel::<Result<Batch>>(BUFFERS);
        for _ in 0..BUFFERS {
            free.send(Batch::default()).expect("the channel holds every buffer");
        }

        // Fill each buffer that comes back with the next batch, until the run
        // ends, a batch fails, or the loader hangs up.
        let mut cursor = Cursor::new(plan, epochs.clone());
        let work = move || {
            while let Ok(mut batch) = free_rx.recv() {
                let Some(filled) = cursor.fill_next(&mut batch) else { return };
                let failed = filled.is_err();
                if full_tx.send(filled.map(|()| batch)).is_err() || failed {
                    return;
                }
            }
        };
        let thread = std::thread::Builder::new().name("xent-loader".into());
        match thread.spawn_scoped(scope, work) {
            Ok(_) => {
                let source = Source::Background { free, full, current: None };
                Ok(Loader { source, remaining })
            }
            Err(_) => Loader::inline(plan, epochs),
        }
    }

    /// The next batch, or `None` after the run's last one or an error.
    ///
    /// # Errors
    ///
    /// As [`BatchPlan::fill`]; the loader yields nothing after an error.
    #[allow(clippy::should_implement_trait)] // lends its buffer, so not an Iterator
    pub fn next(&mut self) -> Option<Result<&Batch>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let filled = match &mut self.source {
            Source::Inline { cursor, batch } => {
                let filled = cursor.fill_next(batch).expect("the cursor holds every counted batch");
                filled.map(|()| &*batch)
            }
            Source::Background { free, full, current } => {
                // The batch handed out last is done with: back for refilling.
                // A failed send means the thread already stopped at the end.
                if let Some(done) = current.take() {
                    free.send(done).ok();
                }
                let received = full.recv().expect("the loader thread sends every counted batch");
                received.map(|batch| &*current.insert(batch))
            }
        };
        if filled.is_err() {
            self.remaining = 0;
        }
        Some(filled)
    }
}

/// The number of batches of `plan` over `epochs`.
fn count_batches(plan: &BatchPlan<'_>, epochs: &RangeInclusive<usize>) -> Result<usize> {
    if plan.batch_size == 0 {
        return Err(Error::arg("batch size must be at least 1, found 0"));
    }
    Ok(epochs.clone().count() * plan.steps_per_epoch())
}

/// Walks the epochs of a run batch by batch, shuffling at each epoch's start.
struct Cursor<'a> {
    plan: BatchPlan<'a>,
    epochs: RangeInclusive<usize>,
    order: Vec<usize>,
    /// The current epoch, its next batch's first position in `order`, and
    /// the batches it has given.
    epoch: usize,
    start: usize,
    step: usize,
}

impl<'a> Cursor<'a> {
    fn new(plan: BatchPlan<'a>, epochs: RangeInclusive<usize>) -> Cursor<'a> {
        // Positioned past the end, so the first batch opens the first epoch.
        let start = plan.dataset.len();
        Cursor { plan, epochs, order: Vec::new(), epoch: 0, start, step: 0 }
    }

    /// Fills `batch` with the next batch; `None` when the run is over.
    fn fill_next(&mut self, batch: &mut Batch) -> Option<Result<()>> {
        // A new epoch when the last one is used up.
        let n = self.plan.samples_per_epoch();
        if n == 0 {
            return None;
        }
        if self.start >= n {
            self.epoch = self.epochs.next()?;
            shuffle_into(&mut self.order, self.plan.dataset.len(), self.plan.seed, self.epoch);
            (self.start, self.step) = (0, 0);
        }

        // The next slice of the order.
        let end = (self.start + self.plan.batch_size).min(n);
        let indices = &self.order[self.start..end];
        (self.start, self.step) = (end, self.step + 1);
        (batch.epoch, batch.step) = (self.epoch, self.step);
        Some(self.plan.fill(self.epoch, indices, &mut batch.x, &mut batch.targets))
    }
}

/// The consecutive batches of an epoch's order: slices of `batch_size`
/// indices, the last one shorter when the size does not divide the count.
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    chunks: std::slice::Chunks<'a, usize>,
}

impl<'a> Batches<'a> {
    /// Batches of `order`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `batch_size` is 0.
    pub fn new(order: &'a [usize], batch_size: usize) -> Result<Batches<'a>> {
        if batch_size == 0 {
            return Err(Error::arg("batch size must be at least 1, found 0"));
        }
        Ok(Batches { chunks: order.chunks(batch_size) })
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = &'a [usize];

    fn next(&mut self) -> Option<&'a [usize]> {
        self.chunks.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for Batches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::numbered_classes;

    #[test]
    fn measure_matches_direct_formula() {
        // Two 1×1×2 images: values 0, 2, 4, 4 over max 4 → 0, .5, 1, 1.
        let ds = Dataset::new("t", vec![0, 2, 4, 4], vec![0, 1], [1, 1, 2], numbered_classes(2), 4)
            .expect("valid dataset");
        let norm = Normalize::measure(&ds);
        let var: f64 =
            [0.0f64, 0.5, 1.0, 1.0].iter().map(|s| (s - 0.625).powi(2)).sum::<f64>() / 4.0;
        assert_eq!(norm.mean, vec![0.625]);
        assert_eq!(norm.std, vec![var.sqrt() as f32]);
    }

    #[test]
    fn constant_channel_gets_unit_std() {
        let ds = Dataset::new("t", vec![3; 4], vec![0, 0], [1, 1, 2], numbered_classes(1), 4)
            .expect("valid dataset");
        assert_eq!(Normalize::measure(&ds).std, vec![1.0]);
    }

    #[test]
    fn a_last_batch_of_one_is_dropped_only_when_asked() {
        // 7 = 2 · 3 + 1: the batch of one goes only for batch norm's sake.
        assert_eq!(samples_per_epoch(7, 3, false), 7);
        assert_eq!(samples_per_epoch(7, 3, true), 6);
        // Nothing to drop: a remainder of 2, batches of one, a single sample.
        assert_eq!(samples_per_epoch(8, 3, true), 8);
        assert_eq!(samples_per_epoch(7, 1, true), 7);
        assert_eq!(samples_per_epoch(1, 3, true), 1);
    }

    #[test]
    fn batches_keep_the_short_last_batch() {
        let order: Vec<usize> = (0..10).collect();
        let sizes: Vec<usize> =
            Batches::new(&order, 4).expect("size > 0").map(<[_]>::len).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        assert_eq!(Batches::new(&order, 3).expect("size > 0").len(), 4);
        assert!(Batches::new(&order, 0).is_err());
    }
}
