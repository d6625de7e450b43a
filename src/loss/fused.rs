//! The training step's cross-entropy: class targets, `[N, K]` logits, loss
//! and `dlogits` in one fused pass per row, writing into the caller's buffer.
//!
//! Per row: one pass for the maximum, one for `exp(z - max)` and its sum,
//! one that writes `dlogits`. `exp` runs in `f32`; sums and the loss in `f64`.

use super::softmax::exp_shifted_row;
use super::{
    check_label_smoothing, check_weight, class_denominator, class_weight, CrossEntropy, Reduction,
};
use crate::{Error, Result, Tensor};

const OP: &str = "cross_entropy_classes_into";

/// Cross-entropy of `[N, K]` logits against class targets, returning the
/// `Mean` or `Sum` loss and writing its gradient into `dlogits` (resized to
/// `[N, K]`; no allocation once it has that size).
///
/// With `ε` the label smoothing, `w` the class weights, `W = Σ_c w_c` and
/// `d` the denominator (`Σ w[y_i]` over targets that are not ignored under
/// `Mean`, 1 under `Sum`), a row that counts contributes
///
/// ```text
/// loss_i    = (1 - ε) w[y] (lse - z[y]) + (ε / K) Σ_c w_c (lse - z_c)
/// dlogits_i = (p ((1 - ε) w[y] + ε W / K) - (1 - ε) w[y] onehot(y) - ε w / K) / d
/// ```
///
/// which is `(p - onehot(y)) / N` in the plain case. Values agree with
/// [`cross_entropy`](super::cross_entropy) to `f32` rounding.
///
/// When the denominator is zero (every target of the batch ignored, or all
/// of them of weight 0) the returned mean is NaN or infinite, as PyTorch's
/// is, but `dlogits` is all zeros, so an optimiser step never sees a NaN.
/// (PyTorch also gives zeros when every target is ignored; with zero
/// weights its gradient is NaN.) Ignored rows always get zero gradient.
///
/// # Errors
///
/// [`Error::Shape`] when `logits` is not `[N, K]` with `K > 0` or `targets`
/// is not `[N]`; [`Error::InvalidArgument`] for `Reduction::None` (use
/// [`cross_entropy`](super::cross_entropy)) and as
/// [`cross_entropy`](super::cross_entropy) for targets and options.
pub fn cross_entropy_classes_into(
    logits: &Tensor,
    targets: &[i64],
    opts: &CrossEntropy<'_>,
    dlogits: &mut Tensor,
) -> Result<f64> {
    // Shapes and options; the denominator also checks the targets.
    let (n, k) = check_batch(logits, opts)?;
    let denominator = class_denominator(OP, targets, &[n], k, opts.weight, opts.ignore_index)?;
    let grad_scale = match opts.reduction {
        Reduction::Mean if denominator == 0.0 => 0.0,
        Reduction::Mean => 1.0 / denominator,
        _ => 1.0,
    };

    // Row-independent constants: the smoothing mass per class, W, and what
    // every class loses to smoothing in the gradient, ε w_c / K / d.
    let eps = f64::from(opts.label_smoothing);
    let uniform = eps / k as f64;
    let weight_sum = opts.weight.map_or(k as f64, |w| w.iter().map(|&w| f64::from(w)).sum());
    let off = (uniform * grad_scale) as f32;
    dlogits.resize(&[n, k]);

    let mut total = 0.0;
    for (i, &y) in targets.iter().enumerate() {
        let z = logits.row(i);
        let d = dlogits.row_mut(i);
        if y == opts.ignore_index {
            d.fill(0.0);
            continue;
        }
        let y = y as usize;
        let wy = class_weight(opts.weight, y);

        // Passes 1 and 2: max, then e = exp(z - max) into d and Σ e.
        let (max, sum) = exp_shifted_row(z, d);
        let lse = f64::from(max) + sum.ln();

        // The loss by log-sum-exp; the smoothing term needs Σ w_c z_c.
        let mut loss = (1.0 - eps) * wy * (lse - f64::from(z[y]));
        if eps > 0.0 {
            let wz: f64 = match opts.weight {
                Some(w) => z.iter().zip(w).map(|(&z, &w)| f64::from(w) * f64::from(z)).sum(),
                None => z.iter().map(|&z| f64::from(z)).sum(),
            };
            loss += uniform * (weight_sum * lse - wz);
        }
        total += loss;

        // Pass 3: dlogits = (p a - (1 - ε) w[y] onehot(y) - ε w / K) / d with
        // a = (1 - ε) w[y] + ε W / K, the total target mass of the row.
        let a = (1.0 - eps) * wy + uniform * weight_sum;
        let e_scale = (a / sum * grad_scale) as f32;
        match opts.weight {
            Some(w) if eps > 0.0 => {
                d.iter_mut().zip(w).for_each(|(d, &w)| *d = *d * e_scale - off * w);
            }
            Some(_) => d.iter_mut().for_each(|d| *d *= e_scale),
            None => d.iter_mut().for_each(|d| *d = *d * e_scale - off),
        }
        d[y] -= ((1.0 - eps) * wy * grad_scale) as f32;
    }

    // PyTorch's mean, 0/0 = NaN included.
    Ok(match opts.reduction {
        Reduction::Mean => total / denominator,
        _ => total,
    })
}

/// `(N, K)` of the logits, after checking the shape, the weights, the
/// smoothing and the reduction.
fn check_batch(logits: &Tensor, opts: &CrossEntropy<'_>) -> Result<(usize, usize)> {
    let (n, k) = match logits.shape() {
        &[n, k] if k > 0 => (n, k),
        other => return Err(Error::Shape { op: OP, expected: vec![0, 1], found: other.to_vec() }),
    };
    check_weight(OP, opts.weight, k)?;
    check_label_smoothing(OP, opts.label_smoothing)?;
    if opts.reduction == Reduction::None {
        return Err(Error::arg(format!(
            "{OP}: reduction none is not supported here; use cross_entropy"
        )));
    }
    Ok((n, k))
}
