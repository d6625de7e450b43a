//! Turning a [`Dataset`] into batches: seeded shuffling, batching, and
//! per-channel normalisation of the `u8` pixels into an `f32` tensor
//! `x [N, C, H, W]` with `targets [N]`.
//!
//! The order of an epoch depends only on the seed and the epoch number, so
//! a run can resume at any epoch and see the same batches.

use super::Dataset;
use crate::rng::Rng;
use crate::{Error, Result, Tensor};
use serde::{Deserialize, Serialize};

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
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed, SHUFFLE_STREAM.wrapping_add(epoch as u64)).shuffle(&mut order);
    order
}

/// Writes the samples `indices` of `ds` into `x` as `[b, c, h, w]`, scaled
/// and normalised by `norm`, and their labels into `targets`.
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
    // in the same order of operations as ToTensor then Normalize.
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
            for (o, &v) in out.iter_mut().zip(pixels) {
                *o = table[v as usize];
            }
        }
    }

    // Labels as the class indices cross-entropy takes.
    targets.clear();
    targets.extend(indices.iter().map(|&i| i64::from(ds.label(i))));
    Ok(())
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
    fn batches_keep_the_short_last_batch() {
        let order: Vec<usize> = (0..10).collect();
        let sizes: Vec<usize> =
            Batches::new(&order, 4).expect("size > 0").map(<[_]>::len).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        assert_eq!(Batches::new(&order, 3).expect("size > 0").len(), 4);
        assert!(Batches::new(&order, 0).is_err());
    }
}
