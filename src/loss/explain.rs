//! Every intermediate value of a cross-entropy, row by row, in `f64`: what
//! `xent explain` shows. The numbers are those [`cross_entropy`] computes
//! before rounding to `f32`.
//!
//! [`cross_entropy`]: super::cross_entropy

use super::cross_entropy::Plan;
use super::{exp_shifted, CrossEntropy, Reduction, Targets};
use crate::{Error, Result, Tensor};

/// What one row is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowTarget {
    /// A class index.
    Class(usize),
    /// The row's class target equals `ignore_index`.
    Ignored,
    /// A row of class probabilities.
    Probs,
}

/// The steps of one row, from scores to loss and gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct RowExplanation {
    /// The scores `z`.
    pub logits: Vec<f64>,
    /// `max(z)`.
    pub max: f64,
    /// `z - max`, all at or below 0.
    pub shifted: Vec<f64>,
    /// `exp(z - max)`, all in `[0, 1]`, the largest 1.
    pub exps: Vec<f64>,
    /// `Σ exp(z - max)`, in `[1, K]`.
    pub sum: f64,
    /// `logsumexp(z) = max + ln(sum)`.
    pub logsumexp: f64,
    /// `p = exp(z - max) / sum`.
    pub probs: Vec<f64>,
    /// `log p = z - logsumexp(z)`.
    pub log_probs: Vec<f64>,
    /// The row's target.
    pub target: RowTarget,
    /// The target distribution `y` after label smoothing: one-hot, smoothed
    /// or the given probabilities; zeros when ignored.
    pub target_probs: Vec<f64>,
    /// The row's share of the mean's denominator: `w[y]` for a class target
    /// (0 when ignored), 1 for probability targets.
    pub weight: f64,
    /// `Σ_c w_c y_c (logsumexp(z) - z_c)`, which is
    /// `w[y] (logsumexp(z) - z[y])` for a plain class target.
    pub loss: f64,
    /// The row of `dL/dlogits` for the reduced loss (for `None`, for the sum
    /// of the losses): `(p Σ_c w_c y_c - w ⊙ y) / denominator`.
    pub dlogits: Vec<f64>,
}

/// A cross-entropy, explained.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// One entry per row of the logits.
    pub rows: Vec<RowExplanation>,
    /// The class weights, if any.
    pub class_weights: Option<Vec<f64>>,
    /// `ε`.
    pub label_smoothing: f64,
    /// The class index that is skipped.
    pub ignore_index: i64,
    /// The reduction.
    pub reduction: Reduction,
    /// What the sum of the losses is divided by: `Σ` of the rows' weights
    /// under `Mean`, 1 otherwise.
    pub denominator: f64,
    /// `Σ` of the rows' losses, in `f64`.
    pub total: f64,
}

impl Explanation {
    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.rows.first().map_or(0, |r| r.logits.len())
    }

    /// The per-row losses (the result of `Reduction::None`).
    pub fn losses(&self) -> Vec<f64> {
        self.rows.iter().map(|r| r.loss).collect()
    }

    /// The reduced loss, `total / denominator`; `None` for `Reduction::None`.
    /// Under `Mean` with every target ignored this is NaN (0/0), as in
    /// PyTorch.
    pub fn loss(&self) -> Option<f64> {
        (self.reduction != Reduction::None).then(|| self.total / self.denominator)
    }
}

/// Computes every step of `cross_entropy(logits, targets, opts)` for logits
/// `[N, K]` (or one unbatched row `[K]`).
///
/// # Errors
///
/// [`Error::Shape`] for logits of rank 3 or more; otherwise as
/// [`cross_entropy`](super::cross_entropy).
pub fn explain(
    logits: &Tensor,
    targets: Targets<'_>,
    opts: &CrossEntropy<'_>,
) -> Result<Explanation> {
    if logits.rank() > 2 {
        return Err(Error::Shape {
            op: "explain",
            expected: vec![0, 0],
            found: logits.shape().to_vec(),
        });
    }
    let plan = Plan::new("explain", logits.shape(), targets, opts)?;
    let lanes = plan.lanes();
    let (denominator, scale) = match opts.reduction {
        Reduction::Mean => (plan.denominator, 1.0 / plan.denominator),
        Reduction::Sum | Reduction::None => (1.0, 1.0),
    };

    let rows: Vec<RowExplanation> =
        (0..lanes.count()).map(|lane| explain_row(&plan, logits, lane, scale)).collect();
    Ok(Explanation {
        total: rows.iter().map(|r| r.loss).sum(),
        rows,
        class_weights: opts.weight.map(|w| w.iter().map(|&w| f64::from(w)).collect()),
        label_smoothing: f64::from(opts.label_smoothing),
        ignore_index: opts.ignore_index,
        reduction: opts.reduction,
        denominator,
    })
}

/// One row: the softmax steps, then the target, the loss and the gradient
/// (zero for an ignored row).
fn explain_row(plan: &Plan<'_>, logits: &Tensor, lane: usize, scale: f64) -> RowExplanation {
    // Softmax, step by step.
    let lanes = plan.lanes();
    let mut z = vec![0.0; lanes.size];
    lanes.gather(logits.data(), lane, &mut z);
    let mut exps = z.clone();
    let (max, sum) = exp_shifted(&mut exps);
    let lse = max + sum.ln();
    let shifted: Vec<f64> = z.iter().map(|z| z - max).collect();
    let probs: Vec<f64> = exps.iter().map(|e| e / sum).collect();
    let log_probs: Vec<f64> = z.iter().map(|z| z - lse).collect();

    // The target and what it weighs.
    let mut t = vec![0.0; lanes.size];
    let counts = plan.target(lane, &mut t);
    let (target, weight) = match plan.targets {
        Targets::Classes(ys) if counts => {
            (RowTarget::Class(ys[lane] as usize), plan.weight(ys[lane] as usize))
        }
        Targets::Classes(_) => (RowTarget::Ignored, 0.0),
        Targets::Probs(_) => (RowTarget::Probs, 1.0),
    };

    // Loss and gradient: (p Σ w y - w y) · scale.
    let (loss, mass) = if counts { plan.lane_loss(&z, &t, lse) } else { (0.0, 0.0) };
    let dlogits = if counts {
        probs
            .iter()
            .zip(&t)
            .enumerate()
            .map(|(c, (p, t))| (p * mass - plan.weight(c) * t) * scale)
            .collect()
    } else {
        vec![0.0; lanes.size]
    };

    RowExplanation {
        logits: z,
        max,
        shifted,
        exps,
        sum,
        logsumexp: lse,
        probs,
        log_probs,
        target,
        target_probs: t,
        weight,
        loss,
        dlogits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanation_agrees_with_cross_entropy() {
        let logits = Tensor::from_vec(&[2, 3], vec![2.0, 1.0, 0.1, 0.5, 2.5, 0.3]).unwrap();
        let w = [0.5, 2.0, 1.0];
        let opts = CrossEntropy { weight: Some(&w), label_smoothing: 0.1, ..Default::default() };
        let ex = explain(&logits, Targets::Classes(&[0, 1]), &opts).unwrap();
        let out = super::super::cross_entropy(&logits, Targets::Classes(&[0, 1]), &opts).unwrap();
        assert!((ex.loss().unwrap() - f64::from(out.loss.data()[0])).abs() < 1e-6);
        let grad: Vec<f64> = ex.rows.iter().flat_map(|r| r.dlogits.clone()).collect();
        for (g, d) in grad.iter().zip(out.dlogits.data()) {
            assert!((g - f64::from(*d)).abs() < 1e-7);
        }
        assert_eq!(ex.denominator, 2.5);
        assert_eq!(ex.rows[1].target, RowTarget::Class(1));
    }

    #[test]
    fn all_ignored_mean_is_nan_with_zero_gradient() {
        let logits = Tensor::from_vec(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let ex = explain(&logits, Targets::Classes(&[-100, -100]), &Default::default()).unwrap();
        assert!(ex.loss().unwrap().is_nan());
        assert!(ex.rows.iter().all(|r| r.dlogits == [0.0, 0.0] && r.target == RowTarget::Ignored));
    }
}
