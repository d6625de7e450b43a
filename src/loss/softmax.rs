//! Softmax and log-softmax along any dimension and their backward passes, plus
//! row-wise kernels for `[N, K]` logits that write into a caller's buffer.
//!
//! Both subtract the lane maximum before `exp`; log-softmax is
//! `z - max - ln(Σ exp(z - max))`, never the log of a softmax.

use super::{exp_shifted, Lanes};
use crate::{Error, Result, Tensor};

/// Softmax of `x` along `dim`: `p = exp(z - max) / Σ exp(z - max)` for every
/// lane `z`.
///
/// Each lane is computed in `f64` and rounded once, so for any finite input
/// the result is finite and each lane sums to 1 up to `f32` rounding.
///
/// # Errors
///
/// [`Error::InvalidArgument`] when `dim` is not below the rank (a scalar
/// accepts `dim` 0 and gives 1).
///
/// # Examples
///
/// ```
/// use xent::{loss::softmax, Tensor};
///
/// let logits = Tensor::from_vec(&[1, 3], vec![2.0, 1.0, 0.1])?;
/// let probs = softmax(&logits, 1)?;
/// let rounded: Vec<f32> = probs.data().iter().map(|p| (p * 1e4).round() / 1e4).collect();
/// assert_eq!(rounded, [0.659, 0.2424, 0.0986]);
/// # Ok::<(), xent::Error>(())
/// ```
pub fn softmax(x: &Tensor, dim: usize) -> Result<Tensor> {
    let lanes = Lanes::around("softmax", x.shape(), dim)?;
    let mut y = Tensor::zeros(x.shape());
    let mut z = vec![0.0; lanes.size];
    for lane in 0..lanes.count() {
        lanes.gather(x.data(), lane, &mut z);
        let (_, sum) = exp_shifted(&mut z);
        z.iter_mut().for_each(|e| *e /= sum);
        lanes.scatter(&z, lane, y.data_mut());
    }
    Ok(y)
}

/// Log-softmax of `x` along `dim`: `z - logsumexp(z)` for every lane `z`,
/// with `logsumexp(z) = max + ln Σ exp(z - max)`.
///
/// # Errors
///
/// As [`softmax`].
pub fn log_softmax(x: &Tensor, dim: usize) -> Result<Tensor> {
    let lanes = Lanes::around("log_softmax", x.shape(), dim)?;
    let mut y = Tensor::zeros(x.shape());
    let mut z = vec![0.0; lanes.size];
    let mut e = vec![0.0; lanes.size];
    for lane in 0..lanes.count() {
        lanes.gather(x.data(), lane, &mut z);
        e.copy_from_slice(&z);
        let (max, sum) = exp_shifted(&mut e);

        // z - max is exact enough in f64; ln(sum) lies in [0, ln K].
        let lse = max + sum.ln();
        z.iter_mut().for_each(|v| *v -= lse);
        lanes.scatter(&z, lane, y.data_mut());
    }
    Ok(y)
}

/// Backward of [`softmax`]: given `probs = softmax(x, dim)` and
/// `dprobs = dL/dprobs`, returns `dx = probs * (dprobs - Σ dprobs * probs)`,
/// the sum taken along `dim`.
///
/// # Errors
///
/// [`Error::Shape`] when the two shapes differ; as [`softmax`] for `dim`.
pub fn softmax_backward(probs: &Tensor, dprobs: &Tensor, dim: usize) -> Result<Tensor> {
    dprobs.expect_shape("softmax_backward: dprobs", probs.shape())?;
    let lanes = Lanes::around("softmax_backward", probs.shape(), dim)?;
    let mut dx = Tensor::zeros(probs.shape());
    let mut p = vec![0.0; lanes.size];
    let mut g = vec![0.0; lanes.size];
    for lane in 0..lanes.count() {
        lanes.gather(probs.data(), lane, &mut p);
        lanes.gather(dprobs.data(), lane, &mut g);

        // dp_j/dx_i = p_j (δ_ij - p_i), so dx_i = p_i (g_i - Σ_j g_j p_j).
        let dot: f64 = p.iter().zip(&g).map(|(p, g)| p * g).sum();
        g.iter_mut().zip(&p).for_each(|(g, p)| *g = p * (*g - dot));
        lanes.scatter(&g, lane, dx.data_mut());
    }
    Ok(dx)
}

/// Backward of [`log_softmax`]: given `log_probs = log_softmax(x, dim)` and
/// `dlog_probs = dL/dlog_probs`, returns
/// `dx = dlog_probs - exp(log_probs) * Σ dlog_probs`, the sum taken along
/// `dim`.
///
/// # Errors
///
/// [`Error::Shape`] when the two shapes differ; as [`softmax`] for `dim`.
pub fn log_softmax_backward(log_probs: &Tensor, dlog_probs: &Tensor, dim: usize) -> Result<Tensor> {
    dlog_probs.expect_shape("log_softmax_backward: dlog_probs", log_probs.shape())?;
    let lanes = Lanes::around("log_softmax_backward", log_probs.shape(), dim)?;
    let mut dx = Tensor::zeros(log_probs.shape());
    let mut log_p = vec![0.0; lanes.size];
    let mut g = vec![0.0; lanes.size];
    for lane in 0..lanes.count() {
        lanes.gather(log_probs.data(), lane, &mut log_p);
        lanes.gather(dlog_probs.data(), lane, &mut g);

        // d(log p_j)/dx_i = δ_ij - p_i, so dx_i = g_i - p_i Σ_j g_j.
        let total: f64 = g.iter().sum();
        g.iter_mut().zip(&log_p).for_each(|(g, lp)| *g -= lp.exp() * total);
        lanes.scatter(&g, lane, dx.data_mut());
    }
    Ok(dx)
}

/// Softmax of each row of the last dimension of `logits` (typically
/// `[N, K]`), written into `probs`, which takes the shape of `logits` and
/// keeps its allocation when it is large enough.
///
/// This is the kernel for training and inference loops: `exp` runs in `f32`
/// on max-subtracted values, the row sum is accumulated in `f64`. It agrees
/// with [`softmax`] to within a few `f32` ulps.
///
/// # Errors
///
/// [`Error::Shape`] when `logits` is a scalar or its last dimension is 0.
pub fn softmax_rows_into(logits: &Tensor, probs: &mut Tensor) -> Result<()> {
    let k = row_len("softmax_rows_into", logits)?;
    probs.resize(logits.shape());
    for (z, p) in logits.data().chunks_exact(k).zip(probs.data_mut().chunks_exact_mut(k)) {
        let (_, sum) = exp_shifted_row(z, p);
        let inv = (1.0 / sum) as f32;
        p.iter_mut().for_each(|p| *p *= inv);
    }
    Ok(())
}

/// Log-softmax of each row of the last dimension of `logits`, written into
/// `log_probs` (resized like `probs` in [`softmax_rows_into`]):
/// `z - max - ln Σ exp(z - max)`.
///
/// # Errors
///
/// As [`softmax_rows_into`].
pub fn log_softmax_rows_into(logits: &Tensor, log_probs: &mut Tensor) -> Result<()> {
    let k = row_len("log_softmax_rows_into", logits)?;
    log_probs.resize(logits.shape());
    for (z, lp) in logits.data().chunks_exact(k).zip(log_probs.data_mut().chunks_exact_mut(k)) {
        let (max, sum) = exp_shifted_row(z, lp);
        let ln_sum = sum.ln() as f32;
        lp.iter_mut().zip(z).for_each(|(lp, &z)| *lp = (z - max) - ln_sum);
    }
    Ok(())
}

/// `logsumexp(z) = max + ln Σ exp(z - max)` of one row, in `f64`: the
/// quantity a cross-entropy loss subtracts the target logit from. An empty
/// row gives `-inf`.
pub fn logsumexp(z: &[f32]) -> f64 {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = z.iter().map(|&v| f64::from((v - max).exp())).sum();
    f64::from(max) + sum.ln()
}

/// Writes `exp(z - max)` into `e` and returns `(max, Σ e)`, the sum in `f64`.
pub(super) fn exp_shifted_row(z: &[f32], e: &mut [f32]) -> (f32, f64) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (e, &z) in e.iter_mut().zip(z) {
        *e = (z - max).exp();
        sum += f64::from(*e);
    }
    (max, sum)
}

/// The length of a row of the last dimension, refusing scalars and empty rows.
fn row_len(op: &'static str, logits: &Tensor) -> Result<usize> {
    match logits.shape().last() {
        Some(&k) if k > 0 => Ok(k),
        _ => Err(Error::Shape { op, expected: vec![0, 1], found: logits.shape().to_vec() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape, v.to_vec()).unwrap()
    }

    #[test]
    fn rows_of_probs_sum_to_one() {
        let x = t(&[3, 4], &[1.0, -2.0, 0.5, 3.0, 0.0, 0.0, 0.0, 0.0, 50.0, -50.0, 7.0, 7.5]);
        let mut fast = Tensor::default();
        softmax_rows_into(&x, &mut fast).unwrap();
        for probs in [softmax(&x, 1).unwrap(), fast] {
            for i in 0..3 {
                let sum: f32 = probs.row(i).iter().sum();
                assert!((sum - 1.0).abs() < 1e-6, "row {i} sums to {sum}");
            }
        }
    }

    #[test]
    fn extreme_logits_stay_finite() {
        let x = t(&[2, 3], &[1e4, -1e4, 0.0, -1e4, -1e4, -1e4]);
        let mut fast_p = Tensor::default();
        let mut fast_lp = Tensor::default();
        softmax_rows_into(&x, &mut fast_p).unwrap();
        log_softmax_rows_into(&x, &mut fast_lp).unwrap();
        let p = softmax(&x, 1).unwrap();
        let lp = log_softmax(&x, 1).unwrap();
        for v in [&p, &lp, &fast_p, &fast_lp].iter().flat_map(|t| t.data()) {
            assert!(v.is_finite(), "{v}");
        }
        assert_eq!(lp.data()[1], -2e4);
        assert_eq!(fast_lp.data()[1], -2e4);
        assert_eq!(p.row(1), [1.0 / 3.0; 3]);
        assert!((logsumexp(&[1e4, 1e4]) - (1e4 + 2f64.ln())).abs() < 1e-9);
    }

    #[test]
    fn inner_dim_matches_transposed_last_dim() {
        // [2, 3] along dim 0 is the same as its transpose along dim 1.
        let x = t(&[2, 3], &[1.0, 2.0, 3.0, -1.0, 0.5, 4.0]);
        let xt = t(&[3, 2], &[1.0, -1.0, 2.0, 0.5, 3.0, 4.0]);
        let p = softmax(&x, 0).unwrap();
        let pt = softmax(&xt, 1).unwrap();
        for i in 0..2 {
            for j in 0..3 {
                assert_eq!(p.data()[i * 3 + j], pt.data()[j * 2 + i]);
            }
        }
    }

    #[test]
    fn scalar_softmax_is_one_and_bad_dim_is_refused() {
        assert_eq!(softmax(&Tensor::scalar(3.0), 0).unwrap().data(), [1.0]);
        assert!(softmax(&t(&[2], &[1.0, 2.0]), 1).is_err());
        let mut out = Tensor::default();
        assert!(softmax_rows_into(&Tensor::scalar(1.0), &mut out).is_err());
    }
}
