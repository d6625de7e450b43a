//! Softmax, log-softmax, cross-entropy and NLL: values and gradients, with
//! `torch.nn.functional` semantics.
//!
//! Two rules hold everywhere. The maximum along the class dimension is
//! subtracted before `exp`, so any finite logits (±1e4 included) give finite
//! probabilities, losses and gradients. And the log of a softmax is never
//! taken: log-probabilities are `z - logsumexp(z)`, and a loss is
//! `logsumexp(z) - z[y]`. Storage is `f32`; the general functions compute each
//! lane in `f64` and round once, and every sum that becomes a reported loss is
//! accumulated in `f64`.
//!
//! | function | use |
//! |---|---|
//! | [`softmax`], [`log_softmax`] and their backward passes | any rank, any dimension |
//! | [`softmax_rows_into`], [`log_softmax_rows_into`] | `[N, K]` logits into a caller's buffer |
//! | [`cross_entropy`], [`nll_loss`] | the full PyTorch semantics, value and gradient |
//! | [`cross_entropy_classes_into`] | the training step: fused, allocation-free |
//! | [`explain`] | every intermediate value, for display |

mod cross_entropy;
mod explain;
mod fused;
mod softmax;

pub use cross_entropy::{
    cross_entropy, cross_entropy_with_dloss, nll_loss, nll_loss_with_dloss, CrossEntropy,
    CrossEntropyOutput, NllLoss, NllOutput, Targets,
};
pub use explain::{explain, Explanation, RowExplanation, RowTarget};
pub use fused::cross_entropy_classes_into;
pub use softmax::{
    log_softmax, log_softmax_backward, log_softmax_rows_into, logsumexp, softmax, softmax_backward,
    softmax_rows_into,
};

use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// How per-sample losses become the returned loss, as PyTorch's `reduction`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The weighted mean: the sum of the losses divided by the sum of the
    /// weights of the targets that count (see [`cross_entropy`]).
    #[default]
    Mean,
    /// The sum of the per-sample losses.
    Sum,
    /// No reduction: one loss per sample (and per spatial position).
    None,
}

impl Reduction {
    /// The name PyTorch uses: `mean`, `sum` or `none`.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::None => "none",
        }
    }
}

impl fmt::Display for Reduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Reduction {
    type Err = Error;

    fn from_str(text: &str) -> Result<Reduction> {
        match text {
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            "none" => Ok(Reduction::None),
            other => {
                Err(Error::arg(format!("unknown reduction {other:?} (expected mean, sum or none)")))
            }
        }
    }
}

/// A tensor seen as `[outer, size, inner]` around one dimension: a lane is
/// the `size` elements that share an outer and an inner index, `inner` apart.
#[derive(Clone, Copy, Debug)]
struct Lanes {
    outer: usize,
    size: usize,
    inner: usize,
}

impl Lanes {
    /// The lanes of `shape` along `dim`. A scalar is one lane of one element.
    fn around(op: &str, shape: &[usize], dim: usize) -> Result<Lanes> {
        if shape.is_empty() && dim == 0 {
            return Ok(Lanes { outer: 1, size: 1, inner: 1 });
        }
        if dim >= shape.len() {
            return Err(Error::arg(format!(
                "{op}: dim {dim} is out of range for a tensor of shape {shape:?}"
            )));
        }
        Ok(Lanes {
            outer: shape[..dim].iter().product(),
            size: shape[dim],
            inner: shape[dim + 1..].iter().product(),
        })
    }

    /// Number of lanes.
    fn count(&self) -> usize {
        self.outer * self.inner
    }

    /// Offset of the first element of lane `lane`; lanes are numbered outer
    /// index first, so lane `n * inner + s` is sample `n`, position `s`.
    fn start(&self, lane: usize) -> usize {
        (lane / self.inner) * self.size * self.inner + lane % self.inner
    }

    /// Copies lane `lane` of `src` into `dst`, widened to `f64`.
    fn gather(&self, src: &[f32], lane: usize, dst: &mut [f64]) {
        let start = self.start(lane);
        for (j, v) in dst.iter_mut().enumerate() {
            *v = f64::from(src[start + j * self.inner]);
        }
    }

    /// Writes `src` into lane `lane` of `dst`, rounded to `f32`.
    fn scatter(&self, src: &[f64], lane: usize, dst: &mut [f32]) {
        let start = self.start(lane);
        for (j, &v) in src.iter().enumerate() {
            dst[start + j * self.inner] = v as f32;
        }
    }
}

/// Overwrites `z` with `exp(z - max)` and returns `(max, sum)`; the caller's
/// `logsumexp(z)` is `max + ln(sum)`. Subtracting the maximum keeps every
/// exponent at or below 0, so nothing overflows and the largest term is 1.
fn exp_shifted(z: &mut [f64]) -> (f64, f64) {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    (max, sum)
}

/// The class layout of a loss input `(N, C, d1, ...)`, `(N, C)` or `(C,)`.
#[derive(Clone, Debug)]
struct ClassLayout {
    /// Lanes along the class dimension (1, or 0 when unbatched).
    lanes: Lanes,
    /// The shape of a class-index target and of an unreduced loss.
    target_shape: Vec<usize>,
}

impl ClassLayout {
    fn new(op: &str, shape: &[usize]) -> Result<ClassLayout> {
        let class_dim = match shape.len() {
            0 => {
                return Err(Error::arg(format!(
                    "{op}: the input is a scalar; expected (C,), (N, C) or (N, C, d1, ...)"
                )))
            }
            1 => 0,
            _ => 1,
        };
        let lanes = Lanes::around(op, shape, class_dim)?;
        if lanes.size == 0 {
            return Err(Error::arg(format!("{op}: the input {shape:?} has no classes")));
        }
        let mut target_shape = shape.to_vec();
        target_shape.remove(class_dim);
        Ok(ClassLayout { lanes, target_shape })
    }

    fn classes(&self) -> usize {
        self.lanes.size
    }
}

/// Checks that `weight` has one entry per class.
fn check_weight(op: &str, weight: Option<&[f32]>, classes: usize) -> Result<()> {
    match weight {
        Some(w) if w.len() != classes => Err(Error::arg(format!(
            "{op}: weight has {} values but the input has {classes} classes",
            w.len()
        ))),
        _ => Ok(()),
    }
}

/// Checks that the label smoothing `ε` lies in `[0, 1]` (NaN does not).
fn check_label_smoothing(op: &str, eps: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::arg(format!("{op}: label_smoothing must be in [0, 1], got {eps}")));
    }
    Ok(())
}

/// The weight of class `c` (1 without weights).
fn class_weight(weight: Option<&[f32]>, c: usize) -> f64 {
    weight.map_or(1.0, |w| f64::from(w[c]))
}

/// Checks every class-index target against `0..classes` (or `ignore_index`)
/// and returns the mean's denominator: `Σ w[y_i]` over the targets that are
/// not ignored (their count without weights).
fn class_denominator(
    op: &str,
    targets: &[i64],
    target_shape: &[usize],
    classes: usize,
    weight: Option<&[f32]>,
    ignore_index: i64,
) -> Result<f64> {
    // Length first: a class-index target has the input's shape without C.
    if targets.len() != target_shape.iter().product::<usize>() {
        return Err(Error::Shape {
            op: "class-index targets",
            expected: target_shape.to_vec(),
            found: vec![targets.len()],
        });
    }

    // Range, and the weights of the targets that count.
    let mut denominator = 0.0;
    for (i, &y) in targets.iter().enumerate() {
        if y == ignore_index {
            continue;
        }
        if y < 0 || y as u64 >= classes as u64 {
            return Err(Error::arg(format!(
                "{op}: target{} = {y} is out of range: classes are 0..={} \
                 (ignore_index is {ignore_index})",
                position(i, target_shape),
                classes - 1
            )));
        }
        denominator += class_weight(weight, y as usize);
    }
    Ok(denominator)
}

/// `[i, j, ...]` for flat index `flat` of a tensor of `shape`; empty for a
/// scalar.
fn position(flat: usize, shape: &[usize]) -> String {
    if shape.is_empty() {
        return String::new();
    }
    let mut index = vec![0; shape.len()];
    let mut rest = flat;
    for (d, &size) in shape.iter().enumerate().rev() {
        index[d] = rest % size.max(1);
        rest /= size.max(1);
    }
    let parts: Vec<String> = index.iter().map(usize::to_string).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_of_inner_dim() {
        // [2, 3, 4] around dim 1: 8 lanes of 3, stride 4.
        let lanes = Lanes::around("t", &[2, 3, 4], 1).unwrap();
        assert_eq!((lanes.outer, lanes.size, lanes.inner, lanes.count()), (2, 3, 4, 8));
        assert_eq!(lanes.start(5), 12 + 1);
        assert!(Lanes::around("t", &[2, 3], 2).is_err());
    }

    #[test]
    fn position_names_every_index() {
        assert_eq!(position(7, &[2, 3, 4]), "[0, 1, 3]");
        assert_eq!(position(3, &[6]), "[3]");
        assert_eq!(position(0, &[]), "");
    }

    #[test]
    fn reduction_round_trips_through_its_name() {
        for r in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            assert_eq!(r.name().parse::<Reduction>().unwrap(), r);
        }
        assert!("avg".parse::<Reduction>().is_err());
    }

    #[test]
    fn class_denominator_names_the_bad_target() {
        let err = class_denominator("ce", &[0, 1, 5], &[3], 3, None, -100).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("target[2] = 5") && text.contains("0..=2"), "{text}");
        let w = [0.5, 2.0, 1.0];
        assert_eq!(class_denominator("ce", &[0, 1, -100], &[3], 3, Some(&w), -100).unwrap(), 2.5);
    }
}
