//! Batch normalisation, as PyTorch's `BatchNorm1d` (`[n, c]` or `[n, c, l]`)
//! and `BatchNorm2d` (`[n, c, h, w]`): statistics per channel (dim 1) over the
//! batch and every position.
//!
//! Per-channel sums are taken in `f64`, each channel by one thread in a fixed
//! order, so the results do not depend on the number of threads.

use rayon::prelude::*;

use super::{Buffer, Layer, Mode, Param};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Passes over fewer elements than this run on one thread.
const PARALLEL_MIN: usize = 1 << 14;

/// Hyper-parameters of a [`BatchNorm`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before its square root.
    pub eps: f64,
    /// Weight of the new batch in the running statistics:
    /// `running = (1 − momentum)·running + momentum·batch`.
    pub momentum: f64,
    /// Whether the layer has a learned scale (weight) and shift (bias).
    pub affine: bool,
}

impl Default for BatchNormConfig {
    fn default() -> BatchNormConfig {
        BatchNormConfig { eps: 1e-5, momentum: 0.1, affine: true }
    }
}

/// What the last forward pass normalised one channel with, and the sums the
/// last backward pass took over it.
#[derive(Clone, Copy, Debug, Default)]
struct Channel {
    /// The mean subtracted: the batch's in training, the running one in eval.
    mean: f64,
    /// The variance divided by: the batch's biased one, or the running one.
    var: f64,
    /// `1 / √(var + eps)`.
    rstd: f64,
    /// `Σ dy` over the channel.
    sum_dy: f64,
    /// `Σ dy · (x − mean)` over the channel.
    sum_dy_xc: f64,
    /// Coefficients of the elementwise pass that follows, in `f32`: forward
    /// `y = (x − mean)·scale + shift`, backward
    /// `dx = scale·dy + shift + (x − mean)·slope`.
    mean32: f32,
    scale: f32,
    shift: f32,
    slope: f32,
}

/// `y = (x − mean) / √(var + eps) · weight + bias`, per channel.
///
/// In [`Mode::Train`] the mean and the biased variance are the batch's, and
/// the running statistics move towards the batch's mean and unbiased variance
/// (`var · m/(m − 1)` for `m` values per channel). In [`Mode::Eval`] the
/// running statistics are used and left alone. See
/// <https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html>.
///
/// Parameters: `weight [c]` (init 1) and `bias [c]` (init 0) when affine.
/// Buffers: `running_mean [c]` (init 0), `running_var [c]` (init 1) and
/// `num_batches_tracked` (a scalar count of training batches).
#[derive(Clone, Debug)]
pub struct BatchNorm {
    channels: usize,
    config: BatchNormConfig,
    /// `[weight, bias]`, or nothing without affine.
    params: Vec<Param>,
    /// `[running_mean, running_var, num_batches_tracked]`.
    buffers: Vec<Buffer>,
    /// Per channel, from the last forward and backward passes.
    stats: Vec<Channel>,
    /// Values per channel in the last forward pass.
    count: usize,
    /// Whether the last forward pass used the batch's own statistics.
    batch_stats: bool,
}

impl BatchNorm {
    /// A layer over `channels` channels (or features), with weight 1, bias 0,
    /// running mean 0 and running variance 1, as PyTorch initialises them.
    pub fn new(channels: usize, config: BatchNormConfig) -> BatchNorm {
        let params = if config.affine {
            vec![Param::new(Tensor::full(&[channels], 1.0)), Param::new(Tensor::zeros(&[channels]))]
        } else {
            Vec::new()
        };
        let buffers = vec![
            Buffer::F32(Tensor::zeros(&[channels])),
            Buffer::F32(Tensor::full(&[channels], 1.0)),
            Buffer::I64(0),
        ];
        BatchNorm {
            channels,
            config,
            params,
            buffers,
            stats: vec![Channel::default(); channels],
            count: 0,
            batch_stats: false,
        }
    }

    /// Number of channels (features).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The layer's hyper-parameters.
    pub fn config(&self) -> &BatchNormConfig {
        &self.config
    }

    /// The running mean, `[c]`.
    pub fn running_mean(&self) -> &Tensor {
        running(&self.buffers).0
    }

    /// The running (unbiased) variance, `[c]`.
    pub fn running_var(&self) -> &Tensor {
        running(&self.buffers).1
    }

    /// Training batches seen, PyTorch's `num_batches_tracked`.
    pub fn num_batches_tracked(&self) -> i64 {
        running(&self.buffers).2
    }

    /// Per-channel mean and biased variance of the last training batch;
    /// `None` when the last forward pass was in [`Mode::Eval`] or there was
    /// none.
    pub fn batch_stats(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        self.batch_stats.then(|| self.stats.iter().map(|s| (s.mean, s.var)).unzip())
    }

    /// Mean and biased variance of each channel of `x` (two passes: the
    /// centred sum of squares does not cancel as `Σx² − m·mean²` would).
    fn batch_statistics(&mut self, x: &Tensor, inner: usize) {
        let (c, count) = (self.channels, self.count as f64);
        let parallel = x.numel() >= PARALLEL_MIN;
        for_each_channel(&mut self.stats, parallel, |ch, s| {
            let planes = || channel_planes(x.data(), c, inner, ch);
            let mean = planes().map(|p| sum_pairs(p, p, |x, _| x)).sum::<f64>() / count;
            let sq = planes().map(|p| sum_pairs(p, p, |x, _| (x - mean) * (x - mean))).sum::<f64>();
            s.mean = mean;
            s.var = sq / count;
        });
    }

    /// Moves the running statistics towards the batch's, the variance
    /// unbiased (PyTorch stores `var · m/(m − 1)` but normalises by `var`).
    fn update_running(&mut self) {
        let momentum = self.config.momentum;
        let bessel = self.count as f64 / (self.count - 1) as f64;
        let (mean, var, tracked) = running_mut(&mut self.buffers);
        let news = mean.data_mut().iter_mut().zip(var.data_mut()).zip(&self.stats);
        for ((mean, var), s) in news {
            *mean = ((1.0 - momentum) * f64::from(*mean) + momentum * s.mean) as f32;
            *var = ((1.0 - momentum) * f64::from(*var) + momentum * s.var * bessel) as f32;
        }
        *tracked += 1;
    }
}

impl Layer for BatchNorm {
    fn spec(&self) -> String {
        let defaults = BatchNormConfig::default();
        let mut options = Vec::new();
        if self.config.eps != defaults.eps {
            options.push(format!("eps={}", self.config.eps));
        }
        if self.config.momentum != defaults.momentum {
            options.push(format!("momentum={}", self.config.momentum));
        }
        if !self.config.affine {
            options.push("affine=false".to_string());
        }
        if options.is_empty() {
            "bn".into()
        } else {
            format!("bn({})", options.join(","))
        }
    }

    fn output_shape(&self, x_shape: &[usize]) -> Vec<usize> {
        x_shape.to_vec()
    }

    /// Refuses an input whose dim 1 is not the channel count, and, in
    /// training, fewer than two values per channel (PyTorch raises there
    /// too: a variance of one value is not defined).
    fn check_input(&self, x_shape: &[usize], mode: Mode) -> Result<()> {
        if x_shape.len() < 2 || x_shape[1] != self.channels {
            return Err(Error::Shape {
                op: "batchnorm input [n, c, …] (0 = any size)",
                expected: vec![0, self.channels],
                found: x_shape.to_vec(),
            });
        }
        let count = x_shape[0] * x_shape[2..].iter().product::<usize>();
        if mode == Mode::Train && count < 2 {
            return Err(Error::arg(format!(
                "batchnorm in training needs at least 2 values per channel, an input of shape \
                 {x_shape:?} gives {count}; use a batch of at least 2"
            )));
        }
        Ok(())
    }

    /// # Panics
    ///
    /// In [`Mode::Train`] with fewer than two values per channel, which
    /// [`Layer::check_input`] refuses first.
    fn forward(&mut self, x: &Tensor, y: &mut Tensor, mode: Mode) {
        assert_eq!(x.dim(1), self.channels, "batchnorm: channels checked at build");
        let inner: usize = x.shape()[2..].iter().product();
        self.count = x.dim(0) * inner;

        // The statistics to normalise with: the batch's, or the running ones.
        self.batch_stats = mode == Mode::Train;
        if self.batch_stats {
            assert!(self.count > 1, "batchnorm training input checked by check_input");
            self.batch_statistics(x, inner);
            self.update_running();
        } else {
            let (mean, var, _) = running(&self.buffers);
            let stored = mean.data().iter().zip(var.data());
            for (s, (&mean, &var)) in self.stats.iter_mut().zip(stored) {
                (s.mean, s.var) = (f64::from(mean), f64::from(var));
            }
        }

        // y = (x − mean) · (weight · rstd) + bias, one batch row at a time.
        let (weight, bias) = affine(&self.params);
        for (ch, s) in self.stats.iter_mut().enumerate() {
            s.rstd = 1.0 / (s.var + self.config.eps).sqrt();
            s.mean32 = s.mean as f32;
            s.scale = (f64::from(weight.map_or(1.0, |w| w[ch])) * s.rstd) as f32;
            s.shift = bias.map_or(0.0, |b| b[ch]);
        }
        let stats = &self.stats;
        for_each_row(y.data_mut(), x.data(), x.data(), self.channels * inner, |y, x, _| {
            for ((y, x), s) in y.chunks_mut(inner).zip(x.chunks(inner)).zip(stats) {
                let (mean, scale, shift) = (s.mean32, s.scale, s.shift);
                y.iter_mut().zip(x).for_each(|(y, &x)| *y = (x - mean) * scale + shift);
            }
        });
    }

    /// Adds `dweight = Σ dy · x̂` and `dbias = Σ dy` per channel into the
    /// gradients (`x̂ = (x − mean)·rstd`). After a training forward,
    /// `dx = weight·rstd·(dy − mean(dy) − x̂·mean(dy·x̂))`, the batch
    /// statistics depending on `x`; after an eval forward, the running ones do
    /// not and `dx = weight·rstd·dy`.
    fn backward(&mut self, x: &Tensor, _y: &Tensor, dy: &Tensor, dx: Option<&mut Tensor>) {
        assert_eq!(x.dim(1), self.channels, "batchnorm: channels checked at build");
        let inner: usize = x.shape()[2..].iter().product();
        let c = self.channels;

        // Per channel: Σ dy and Σ dy·(x − mean).
        let parallel = x.numel() >= PARALLEL_MIN;
        for_each_channel(&mut self.stats, parallel, |ch, s| {
            let xs = channel_planes(x.data(), c, inner, ch);
            let pairs = xs.zip(channel_planes(dy.data(), c, inner, ch));
            let (mut sum_dy, mut sum_dy_xc) = (0.0, 0.0);
            for (x, dy) in pairs {
                sum_dy += sum_pairs(dy, dy, |dy, _| dy);
                sum_dy_xc += sum_pairs(x, dy, |x, dy| dy * (x - s.mean));
            }
            (s.sum_dy, s.sum_dy_xc) = (sum_dy, sum_dy_xc);
        });

        // Parameter gradients, accumulated.
        if let [weight, bias] = &mut self.params[..] {
            let grads = weight.grad.data_mut().iter_mut().zip(bias.grad.data_mut());
            for ((dweight, dbias), s) in grads.zip(&self.stats) {
                *dweight += (s.sum_dy_xc * s.rstd) as f32;
                *dbias += s.sum_dy as f32;
            }
        }

        // dx = k·dy − k·mean(dy) − (x − mean)·k·rstd²·mean(dy·(x − mean)),
        // k = weight·rstd; the last two terms only with batch statistics.
        let Some(dx) = dx else { return };
        let (weight, _) = affine(&self.params);
        let count = self.count as f64;
        for (ch, s) in self.stats.iter_mut().enumerate() {
            let k = f64::from(weight.map_or(1.0, |w| w[ch])) * s.rstd;
            let (shift, slope) = if self.batch_stats {
                (-k * s.sum_dy / count, -k * s.rstd * s.rstd * s.sum_dy_xc / count)
            } else {
                (0.0, 0.0)
            };
            (s.scale, s.shift, s.slope) = (k as f32, shift as f32, slope as f32);
        }
        let stats = &self.stats;
        for_each_row(dx.data_mut(), dy.data(), x.data(), c * inner, |dx, dy, x| {
            let planes = dx.chunks_mut(inner).zip(dy.chunks(inner)).zip(x.chunks(inner));
            for (((dx, dy), x), s) in planes.zip(stats) {
                let (mean, scale, shift, slope) = (s.mean32, s.scale, s.shift, s.slope);
                let terms = dx.iter_mut().zip(dy).zip(x);
                terms.for_each(|((dx, &dy), &x)| *dx = scale * dy + shift + (x - mean) * slope);
            }
        });
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    fn param_names(&self) -> &'static [&'static str] {
        &["weight", "bias"][..self.params.len()]
    }

    fn buffers(&self) -> &[Buffer] {
        &self.buffers
    }

    fn buffers_mut(&mut self) -> &mut [Buffer] {
        &mut self.buffers
    }

    fn buffer_names(&self) -> &'static [&'static str] {
        &["running_mean", "running_var", "num_batches_tracked"]
    }
}

/// The running mean, running variance and batch count in `buffers`.
fn running(buffers: &[Buffer]) -> (&Tensor, &Tensor, i64) {
    let [Buffer::F32(mean), Buffer::F32(var), Buffer::I64(tracked)] = buffers else {
        panic!("batchnorm buffers are running_mean, running_var, num_batches_tracked");
    };
    (mean, var, *tracked)
}

/// [`running`], writable.
fn running_mut(buffers: &mut [Buffer]) -> (&mut Tensor, &mut Tensor, &mut i64) {
    let [Buffer::F32(mean), Buffer::F32(var), Buffer::I64(tracked)] = buffers else {
        panic!("batchnorm buffers are running_mean, running_var, num_batches_tracked");
    };
    (mean, var, tracked)
}

/// The weight and bias values, or `None` without affine.
fn affine(params: &[Param]) -> (Option<&[f32]>, Option<&[f32]>) {
    match params {
        [weight, bias] => (Some(weight.value.data()), Some(bias.value.data())),
        _ => (None, None),
    }
}

/// The planes of channel `ch` in `values [n, c, inner]`, batch order.
fn channel_planes(
    values: &[f32],
    c: usize,
    inner: usize,
    ch: usize,
) -> impl Iterator<Item = &[f32]> {
    values.chunks_exact(c * inner).map(move |row| &row[ch * inner..(ch + 1) * inner])
}

/// Runs `f(channel, stats)` for every channel, over threads when `parallel`;
/// either way each channel is one call, so its sums do not change.
fn for_each_channel(
    stats: &mut [Channel],
    parallel: bool,
    f: impl Fn(usize, &mut Channel) + Send + Sync,
) {
    if parallel {
        stats.par_iter_mut().enumerate().for_each(|(ch, s)| f(ch, s));
    } else {
        stats.iter_mut().enumerate().for_each(|(ch, s)| f(ch, s));
    }
}

/// Runs `f(out_row, a_row, b_row)` for every batch row of `row` elements,
/// over threads when the tensor is large. Rows are independent.
fn for_each_row(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    row: usize,
    f: impl Fn(&mut [f32], &[f32], &[f32]) + Send + Sync,
) {
    if out.len() >= PARALLEL_MIN {
        let rows = out.par_chunks_mut(row).zip(a.par_chunks(row)).zip(b.par_chunks(row));
        rows.for_each(|((out, a), b)| f(out, a, b));
    } else {
        let rows = out.chunks_mut(row).zip(a.chunks(row)).zip(b.chunks(row));
        rows.for_each(|((out, a), b)| f(out, a, b));
    }
}

/// `Σᵢ term(a[i], b[i])` in `f64`, in four interleaved partial sums so the
/// additions overlap. The order of the additions is fixed, so is the result.
fn sum_pairs(a: &[f32], b: &[f32], term: impl Fn(f64, f64) -> f64) -> f64 {
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .map(|(&a, &b)| term(f64::from(a), f64::from(b)))
        .sum();
    let mut lanes = [0.0f64; 4];
    for (a, b) in a4.zip(b4) {
        for l in 0..4 {
            lanes[l] += term(f64::from(a[l]), f64::from(b[l]));
        }
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_pairs_adds_every_term_with_a_tail() {
        let a: Vec<f32> = (1..=7).map(|v| v as f32).collect();
        assert_eq!(sum_pairs(&a, &a, |x, _| x), 28.0);
        assert_eq!(sum_pairs(&a[..4], &a[..4], |x, y| x * y), 30.0);
        assert_eq!(sum_pairs(&[], &[], |x, _| x), 0.0);
    }

    #[test]
    fn spec_lists_only_options_that_differ() {
        assert_eq!(BatchNorm::new(3, BatchNormConfig::default()).spec(), "bn");
        let config = BatchNormConfig { eps: 1e-3, momentum: 0.01, affine: false };
        assert_eq!(BatchNorm::new(3, config).spec(), "bn(eps=0.001,momentum=0.01,affine=false)");
    }

    #[test]
    fn training_needs_two_values_per_channel() {
        let layer = BatchNorm::new(4, BatchNormConfig::default());
        assert!(layer.check_input(&[1, 4], Mode::Train).is_err());
        assert!(layer.check_input(&[1, 4], Mode::Eval).is_ok());
        assert!(layer.check_input(&[1, 4, 2, 1], Mode::Train).is_ok());
        assert!(layer.check_input(&[2, 3], Mode::Eval).is_err());
    }
}
