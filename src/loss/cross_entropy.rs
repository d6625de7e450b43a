//! Cross-entropy and NLL with the semantics of `torch.nn.functional`
//! (`cross_entropy`, `nll_loss`): class-index or probability targets, class
//! weights, `ignore_index`, label smoothing, the three reductions and
//! K-dimensional inputs `(N, C, d1, ...)` with the classes in dimension 1.
//!
//! Every lane (one sample at one spatial position) is computed in `f64`:
//! `loss = Σ_c w_c t_c (logsumexp(z) - z_c)` and
//! `dloss/dz = p Σ_c w_c t_c - w ⊙ t`, which is `p - y` for a one-hot target
//! without weights.

use super::{
    check_label_smoothing, check_weight, class_denominator, class_weight, exp_shifted, ClassLayout,
    Lanes, Reduction,
};
use crate::{Error, Result, Tensor};

/// What a cross-entropy compares the logits with.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Class indices, row-major, of shape `(N, d1, ...)` for an input
    /// `(N, C, d1, ...)`, and one index for an unbatched input `(C,)`.
    /// Entries equal to `ignore_index` are skipped.
    Classes(&'a [i64]),
    /// Class probabilities, with the input's shape.
    Probs(&'a Tensor),
}

/// The options of [`cross_entropy`], with PyTorch's defaults.
///
/// [`CrossEntropy::default()`] is `weight: None, ignore_index: -100,
/// label_smoothing: 0.0, reduction: Mean`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropy<'a> {
    /// One weight per class, or `None` for 1 everywhere.
    pub weight: Option<&'a [f32]>,
    /// A class-index target equal to this adds nothing to the loss, the
    /// denominator or the gradient. Must be negative with probability
    /// targets.
    pub ignore_index: i64,
    /// `ε` in `[0, 1]`: the target becomes `(1 - ε) t + ε / C`.
    pub label_smoothing: f32,
    /// How per-sample losses are combined.
    pub reduction: Reduction,
}

impl Default for CrossEntropy<'_> {
    fn default() -> Self {
        CrossEntropy {
            weight: None,
            ignore_index: -100,
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
        }
    }
}

/// A loss and its gradient with respect to the logits.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyOutput {
    /// A scalar for `Mean` and `Sum`; the target's shape `(N, d1, ...)` for
    /// `None`.
    pub loss: Tensor,
    /// `dL/dlogits`, the logits' shape.
    pub dlogits: Tensor,
}

/// The options of [`nll_loss`], with PyTorch's defaults (see
/// [`CrossEntropy`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NllLoss<'a> {
    /// One weight per class, or `None` for 1 everywhere.
    pub weight: Option<&'a [f32]>,
    /// A target equal to this is skipped.
    pub ignore_index: i64,
    /// How per-sample losses are combined.
    pub reduction: Reduction,
}

impl Default for NllLoss<'_> {
    fn default() -> Self {
        NllLoss { weight: None, ignore_index: -100, reduction: Reduction::Mean }
    }
}

/// An NLL loss and its gradient with respect to its input.
#[derive(Clone, Debug, PartialEq)]
pub struct NllOutput {
    /// A scalar for `Mean` and `Sum`; the target's shape for `None`.
    pub loss: Tensor,
    /// `dL/dlog_probs`, the input's shape.
    pub dlog_probs: Tensor,
}

/// Cross-entropy between `logits` and `targets`, as
/// `torch.nn.functional.cross_entropy`, and its gradient.
///
/// Per lane, with `t` the target (one-hot, or the given probabilities)
/// after smoothing `t ← (1 - ε) t + ε / C` and `w` the class weights:
/// `loss = Σ_c w_c t_c (logsumexp(z) - z_c)`. For a class target without
/// smoothing this is `w[y] (logsumexp(z) - z[y])`.
///
/// - `Sum` adds the losses; `None` returns them.
/// - `Mean` with class targets divides by `Σ w[y_i]` over the targets that
///   are not ignored, for the smoothing term too; if all are ignored the
///   loss is NaN (0/0), as in PyTorch, and the gradient is zero.
/// - `Mean` with probability targets divides by the number of lanes
///   (`N × d1 × ...`), whatever the weights.
///
/// `dlogits` is the gradient of the sum of the returned loss's elements (for
/// `None`, of `Σ losses`); [`cross_entropy_with_dloss`] takes an upstream
/// gradient instead.
///
/// # Shapes
///
/// `logits`: `(C,)`, `(N, C)` or `(N, C, d1, ...)`. Class targets: `1`, `N`
/// or `N × d1 × ...` indices. Probability targets: the logits' shape.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for a target outside `0..C` that is not
/// `ignore_index` (naming its position and value), a weight whose length is
/// not `C`, `label_smoothing` outside `[0, 1]`, `ignore_index >= 0` with
/// probability targets, or a scalar input; [`Error::Shape`] when the
/// targets do not fit the logits.
pub fn cross_entropy(
    logits: &Tensor,
    targets: Targets<'_>,
    opts: &CrossEntropy<'_>,
) -> Result<CrossEntropyOutput> {
    cross_entropy_impl(logits, targets, opts, None)
}

/// [`cross_entropy`] with an upstream gradient `dloss = dL/dloss` of the
/// returned loss's shape (a scalar for `Mean` and `Sum`): `dlogits` is then
/// `dL/dlogits`.
///
/// # Errors
///
/// As [`cross_entropy`], and [`Error::Shape`] when `dloss` does not have
/// the loss's shape.
pub fn cross_entropy_with_dloss(
    logits: &Tensor,
    targets: Targets<'_>,
    opts: &CrossEntropy<'_>,
    dloss: &Tensor,
) -> Result<CrossEntropyOutput> {
    cross_entropy_impl(logits, targets, opts, Some(dloss))
}

fn cross_entropy_impl(
    logits: &Tensor,
    targets: Targets<'_>,
    opts: &CrossEntropy<'_>,
    dloss: Option<&Tensor>,
) -> Result<CrossEntropyOutput> {
    let plan = Plan::new("cross_entropy", logits.shape(), targets, opts)?;
    let upstream = Upstream::new("cross_entropy: dloss", opts.reduction, &plan.layout, dloss)?;
    let lanes = plan.layout.lanes;
    let mut dlogits = Tensor::zeros(logits.shape());
    let mut losses = vec![0.0; lanes.count()];
    let mut z = vec![0.0; lanes.size];
    let mut t = vec![0.0; lanes.size];
    let mut p = vec![0.0; lanes.size];

    // Each lane: log-sum-exp, loss, then dz = (p Σ w t - w t) · scale. Ignored
    // lanes keep a zero loss and a zero gradient.
    for (lane, loss) in losses.iter_mut().enumerate() {
        if !plan.target(lane, &mut t) {
            continue;
        }
        lanes.gather(logits.data(), lane, &mut z);
        p.copy_from_slice(&z);
        let (max, sum) = exp_shifted(&mut p);
        p.iter_mut().for_each(|e| *e /= sum);
        let lse = max + sum.ln();
        let (lane_loss, mass) = plan.lane_loss(&z, &t, lse);
        *loss = lane_loss;

        let scale = upstream.scale(lane, plan.denominator);
        for (c, (p, t)) in p.iter_mut().zip(&t).enumerate() {
            *p = (*p * mass - plan.weight(c) * t) * scale;
        }
        lanes.scatter(&p, lane, dlogits.data_mut());
    }

    let loss = reduce(&losses, opts.reduction, plan.denominator, &plan.layout.target_shape);
    Ok(CrossEntropyOutput { loss, dlogits })
}

/// Negative log-likelihood of class targets given `log_probs`, as
/// `torch.nn.functional.nll_loss`, and its gradient: the loss of a lane is
/// `-w[y] log_probs[y]`. It only gathers; it applies no log-softmax, so any
/// input is accepted. Reductions, weights, `ignore_index` (including the
/// NaN mean when every target is ignored) and shapes are those of
/// [`cross_entropy`] with class targets.
///
/// # Errors
///
/// As [`cross_entropy`] with class targets.
pub fn nll_loss(log_probs: &Tensor, targets: &[i64], opts: &NllLoss<'_>) -> Result<NllOutput> {
    nll_loss_impl(log_probs, targets, opts, None)
}

/// [`nll_loss`] with an upstream gradient `dloss` of the returned loss's
/// shape.
///
/// # Errors
///
/// As [`cross_entropy_with_dloss`].
pub fn nll_loss_with_dloss(
    log_probs: &Tensor,
    targets: &[i64],
    opts: &NllLoss<'_>,
    dloss: &Tensor,
) -> Result<NllOutput> {
    nll_loss_impl(log_probs, targets, opts, Some(dloss))
}

fn nll_loss_impl(
    log_probs: &Tensor,
    targets: &[i64],
    opts: &NllLoss<'_>,
    dloss: Option<&Tensor>,
) -> Result<NllOutput> {
    // Shapes, weights and targets, as for cross-entropy.
    let layout = ClassLayout::new("nll_loss", log_probs.shape())?;
    let classes = layout.classes();
    check_weight("nll_loss", opts.weight, classes)?;
    let denominator = class_denominator(
        "nll_loss",
        targets,
        &layout.target_shape,
        classes,
        opts.weight,
        opts.ignore_index,
    )?;
    let upstream = Upstream::new("nll_loss: dloss", opts.reduction, &layout, dloss)?;

    // loss = -w[y] x[y]; its gradient is -w[y] · scale at y and 0 elsewhere.
    let lanes = layout.lanes;
    let mut dlog_probs = Tensor::zeros(log_probs.shape());
    let mut losses = vec![0.0; lanes.count()];
    for (lane, &y) in targets.iter().enumerate() {
        if y == opts.ignore_index {
            continue;
        }
        let at = lanes.start(lane) + y as usize * lanes.inner;
        let w = class_weight(opts.weight, y as usize);
        losses[lane] = -w * f64::from(log_probs.data()[at]);
        dlog_probs.data_mut()[at] = (-w * upstream.scale(lane, denominator)) as f32;
    }

    let loss = reduce(&losses, opts.reduction, denominator, &layout.target_shape);
    Ok(NllOutput { loss, dlog_probs })
}

/// A checked cross-entropy problem: the layout, the options and the mean's
/// denominator.
#[derive(Clone, Debug)]
pub(super) struct Plan<'a> {
    pub layout: ClassLayout,
    pub targets: Targets<'a>,
    pub opts: CrossEntropy<'a>,
    /// `Σ w[y_i]` over class targets that count, or the number of lanes for
    /// probability targets.
    pub denominator: f64,
}

impl<'a> Plan<'a> {
    /// Validates everything about the targets and options against logits of
    /// `shape`.
    pub fn new(
        op: &str,
        shape: &[usize],
        targets: Targets<'a>,
        opts: &CrossEntropy<'a>,
    ) -> Result<Plan<'a>> {
        // Options.
        let layout = ClassLayout::new(op, shape)?;
        let classes = layout.classes();
        check_weight(op, opts.weight, classes)?;
        check_label_smoothing(op, opts.label_smoothing)?;

        // Targets, and the denominator of the mean.
        let denominator = match targets {
            Targets::Classes(ys) => class_denominator(
                op,
                ys,
                &layout.target_shape,
                classes,
                opts.weight,
                opts.ignore_index,
            )?,
            Targets::Probs(probs) => {
                probs.expect_shape("probability targets", shape)?;
                if opts.ignore_index >= 0 {
                    return Err(Error::arg(format!(
                        "{op}: ignore_index {} cannot be used with probability targets \
                         (PyTorch refuses it too); only class-index targets can be ignored",
                        opts.ignore_index
                    )));
                }
                layout.lanes.count() as f64
            }
        };
        Ok(Plan { layout, targets, opts: *opts, denominator })
    }

    /// The lanes along the class dimension.
    pub fn lanes(&self) -> Lanes {
        self.layout.lanes
    }

    /// The weight of class `c`.
    pub fn weight(&self, c: usize) -> f64 {
        class_weight(self.opts.weight, c)
    }

    /// Fills `t` with the target distribution of `lane` after label
    /// smoothing; returns false (and leaves `t` alone) when it is ignored.
    pub fn target(&self, lane: usize, t: &mut [f64]) -> bool {
        let eps = f64::from(self.opts.label_smoothing);
        let uniform = eps / t.len() as f64;
        match self.targets {
            Targets::Classes(ys) => {
                let y = ys[lane];
                if y == self.opts.ignore_index {
                    return false;
                }
                t.fill(uniform);
                t[y as usize] += 1.0 - eps;
            }
            Targets::Probs(probs) => {
                self.layout.lanes.gather(probs.data(), lane, t);
                if eps > 0.0 {
                    t.iter_mut().for_each(|t| *t = *t * (1.0 - eps) + uniform);
                }
            }
        }
        true
    }

    /// `(loss, Σ_c w_c t_c)` of a lane with logits `z`, target `t` and
    /// `lse = logsumexp(z)`: `loss = Σ_c w_c t_c (lse - z_c)`.
    ///
    /// With class targets and no smoothing only the target class is
    /// gathered, as PyTorch does, so a `-inf` logit elsewhere costs nothing;
    /// otherwise every class enters the sum.
    pub fn lane_loss(&self, z: &[f64], t: &[f64], lse: f64) -> (f64, f64) {
        let gather =
            matches!(self.targets, Targets::Classes(_)) && self.opts.label_smoothing == 0.0;
        let mut loss = 0.0;
        let mut mass = 0.0;
        for (c, (&z, &t)) in z.iter().zip(t).enumerate() {
            let wt = self.weight(c) * t;
            mass += wt;
            if !(gather && t == 0.0) {
                loss += wt * (lse - z);
            }
        }
        (loss, mass)
    }
}

/// The upstream gradient and the reduction, turned into one factor per lane.
struct Upstream<'t> {
    reduction: Reduction,
    dloss: Option<&'t [f32]>,
}

impl<'t> Upstream<'t> {
    fn new(
        op: &'static str,
        reduction: Reduction,
        layout: &ClassLayout,
        dloss: Option<&'t Tensor>,
    ) -> Result<Upstream<'t>> {
        if let Some(dloss) = dloss {
            let expected: &[usize] =
                if reduction == Reduction::None { &layout.target_shape } else { &[] };
            if dloss.numel() != expected.iter().product::<usize>() {
                return Err(Error::Shape {
                    op,
                    expected: expected.to_vec(),
                    found: dloss.shape().to_vec(),
                });
            }
        }
        Ok(Upstream { reduction, dloss: dloss.map(Tensor::data) })
    }

    /// `dL/dloss_lane`: the upstream gradient of the lane's loss, divided by
    /// the denominator under `Mean`.
    fn scale(&self, lane: usize, denominator: f64) -> f64 {
        let index = if self.reduction == Reduction::None { lane } else { 0 };
        let g = self.dloss.map_or(1.0, |d| f64::from(d[index]));
        match self.reduction {
            Reduction::Mean => g / denominator,
            Reduction::Sum | Reduction::None => g,
        }
    }
}

/// The returned loss: `Σ losses / denominator`, `Σ losses`, or the losses in
/// the target's shape. The sum runs in `f64`.
fn reduce(losses: &[f64], reduction: Reduction, denominator: f64, shape: &[usize]) -> Tensor {
    let total: f64 = losses.iter().sum();
    match reduction {
        Reduction::Mean => Tensor::scalar((total / denominator) as f32),
        Reduction::Sum => Tensor::scalar(total as f32),
        Reduction::None => {
            let values = losses.iter().map(|&l| l as f32).collect();
            Tensor::from_vec(shape, values).expect("one loss per lane, and lanes fill the shape")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Tensor {
        Tensor::from_vec(&[2, 3], vec![2.0, 1.0, 0.1, 0.5, 2.5, 0.3]).unwrap()
    }

    #[test]
    fn one_hot_gradient_is_p_minus_y() {
        let out =
            cross_entropy(&logits(), Targets::Classes(&[0, 1]), &CrossEntropy::default()).unwrap();
        let p = super::super::softmax(&logits(), 1).unwrap();
        for (i, (d, p)) in out.dlogits.data().iter().zip(p.data()).enumerate() {
            let y = if i == 0 || i == 4 { 1.0 } else { 0.0 };
            assert!((d - (p - y) / 2.0).abs() < 1e-7, "{i}: {d} vs {}", (p - y) / 2.0);
        }
    }

    #[test]
    fn extreme_logits_give_finite_loss_and_gradient() {
        let x = Tensor::from_vec(&[2, 2], vec![1e4, -1e4, -1e4, 1e4]).unwrap();
        let opts = CrossEntropy { reduction: Reduction::None, ..CrossEntropy::default() };
        let out = cross_entropy(&x, Targets::Classes(&[1, 1]), &opts).unwrap();
        assert_eq!(out.loss.data(), [2e4, 0.0]);
        assert_eq!(out.dlogits.data(), [1.0, -1.0, 0.0, 0.0]);
    }

    #[test]
    fn options_are_checked() {
        let x = logits();
        let bad_eps = CrossEntropy { label_smoothing: 1.5, ..CrossEntropy::default() };
        assert!(cross_entropy(&x, Targets::Classes(&[0, 1]), &bad_eps).is_err());
        let w = [1.0, 2.0];
        let bad_w = CrossEntropy { weight: Some(&w), ..CrossEntropy::default() };
        assert!(cross_entropy(&x, Targets::Classes(&[0, 1]), &bad_w).is_err());
        assert!(cross_entropy(&x, Targets::Classes(&[0]), &CrossEntropy::default()).is_err());
        assert!(cross_entropy(&x, Targets::Classes(&[0, 3]), &CrossEntropy::default()).is_err());
    }
}
