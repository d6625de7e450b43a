//! Gradient checks: the analytic gradients of `xent::loss` against central
//! differences `(f(x + h) - f(x - h)) / 2h` in f32 with h = 1e-3, for
//! cross-entropy under every option combination, NLL, and the backward
//! passes of softmax and log-softmax.

use xent::loss::{self, CrossEntropy, NllLoss, Reduction, Targets};
use xent::rng::Rng;
use xent::Tensor;

const H: f32 = 1e-3;
/// The bound on the relative error. An f32 objective `L` is rounded to about
/// `6e-8 |L|`, which becomes `3e-5 |L|` after dividing by `2h`; so gradient
/// entries smaller than `1e-2 max(1, |L|)` are measured against that floor.
const REL: f64 = 1e-2;

/// Compares `analytic` with central differences of `f` at `x`, element by
/// element; fails naming the worst element.
fn gradcheck(what: &str, x: &Tensor, analytic: &Tensor, f: impl Fn(&Tensor) -> f64) {
    assert_eq!(x.shape(), analytic.shape(), "{what}: gradient shape");
    let floor = 1e-2 * f(x).abs().max(1.0);
    let mut worst = (0, 0.0, 0.0, 0.0);
    for i in 0..x.numel() {
        let mut plus = x.clone();
        let mut minus = x.clone();
        plus.data_mut()[i] += H;
        minus.data_mut()[i] -= H;

        // The step actually taken after f32 rounding of x ± h.
        let step = f64::from(plus.data()[i]) - f64::from(minus.data()[i]);
        let numeric = (f(&plus) - f(&minus)) / step;
        let a = f64::from(analytic.data()[i]);
        let rel = (a - numeric).abs() / a.abs().max(numeric.abs()).max(floor);
        if rel > worst.1 {
            worst = (i, rel, a, numeric);
        }
    }
    let (i, rel, a, numeric) = worst;
    assert!(rel < REL, "{what}: element {i}: analytic {a}, numeric {numeric}, rel error {rel}");
}

fn random(rng: &mut Rng, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    let mut t = Tensor::zeros(shape);
    t.data_mut().iter_mut().for_each(|v| *v = rng.uniform(lo, hi));
    t
}

/// Rows of probabilities along dim 1 (dim 0 when unbatched) of `shape`.
fn random_probs(rng: &mut Rng, shape: &[usize]) -> Tensor {
    let mut t = random(rng, shape, 0.05, 1.0);
    let dim = usize::from(shape.len() > 1);
    let c = shape[dim];
    let inner: usize = shape[dim + 1..].iter().product();
    let outer: usize = shape[..dim].iter().product();
    for o in 0..outer {
        for s in 0..inner {
            let at = |j: usize| (o * c + j) * inner + s;
            let sum: f32 = (0..c).map(|j| t.data()[at(j)]).sum();
            (0..c).for_each(|j| t.data_mut()[at(j)] /= sum);
        }
    }
    t
}

/// The objective `Σ dloss · loss`, summed in f64.
fn objective(loss: &Tensor, dloss: &Tensor) -> f64 {
    loss.data().iter().zip(dloss.data()).map(|(&l, &g)| f64::from(l) * f64::from(g)).sum()
}

/// An upstream gradient of the loss's shape for `reduction`.
fn upstream(rng: &mut Rng, reduction: Reduction, target_shape: &[usize]) -> Tensor {
    match reduction {
        Reduction::None => random(rng, target_shape, -1.5, 1.5),
        _ => Tensor::scalar(rng.uniform(0.5, 1.5)),
    }
}

// cross_entropy: class and probability targets, inputs (C,), (N, C) and
// (N, C, H, W), with and without weights, ignore_index, label smoothing,
// under each reduction and a random upstream gradient.
#[test]
fn cross_entropy_every_option_combination() {
    let mut rng = Rng::new(21, 0);
    let mut checked = 0;
    for shape in [vec![5], vec![4, 5], vec![2, 3, 2, 2]] {
        let class_dim = usize::from(shape.len() > 1);
        let c = shape[class_dim];
        let mut target_shape = shape.clone();
        target_shape.remove(class_dim);
        let n_targets: usize = target_shape.iter().product();
        let logits = random(&mut rng, &shape, -2.0, 2.0);
        let w: Vec<f32> = (0..c).map(|_| rng.uniform(0.2, 2.0)).collect();
        let classes: Vec<i64> = (0..n_targets).map(|i| (i % c) as i64).collect();
        let probs = random_probs(&mut rng, &shape);
        for soft in [false, true] {
            for weight in [None, Some(w.as_slice())] {
                // Class 1 is ignored where it occurs; -100 ignores nothing.
                let ignores: &[i64] = if soft { &[-100] } else { &[-100, 1] };
                for &ignore_index in ignores {
                    for label_smoothing in [0.0, 0.1] {
                        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                            let opts =
                                CrossEntropy { weight, ignore_index, label_smoothing, reduction };
                            let targets = if soft {
                                Targets::Probs(&probs)
                            } else {
                                Targets::Classes(&classes)
                            };
                            let dloss = upstream(&mut rng, reduction, &target_shape);
                            let out =
                                loss::cross_entropy_with_dloss(&logits, targets, &opts, &dloss)
                                    .unwrap();
                            let f = |x: &Tensor| {
                                let l = loss::cross_entropy(x, targets, &opts).unwrap().loss;
                                objective(&l, &dloss)
                            };
                            let what = format!("cross_entropy {shape:?} soft {soft} {opts:?}");
                            gradcheck(&what, &logits, &out.dlogits, f);
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * (2 * 2 * 2 * 3 + 2 * 2 * 3));
}

// The fused training path's dlogits is the gradient of the loss it returns.
#[test]
fn fused_cross_entropy_gradient() {
    let mut rng = Rng::new(22, 0);
    let logits = random(&mut rng, &[6, 4], -2.0, 2.0);
    let targets = [0, 3, 1, 1, 2, 3];
    let w = [0.5, 1.0, 2.0, 1.5];
    for weight in [None, Some(&w[..])] {
        for label_smoothing in [0.0, 0.2] {
            for reduction in [Reduction::Mean, Reduction::Sum] {
                let opts = CrossEntropy { weight, ignore_index: 1, label_smoothing, reduction };
                let mut dlogits = Tensor::default();
                loss::cross_entropy_classes_into(&logits, &targets, &opts, &mut dlogits).unwrap();
                let f = |x: &Tensor| {
                    let mut scratch = Tensor::default();
                    loss::cross_entropy_classes_into(x, &targets, &opts, &mut scratch).unwrap()
                };
                gradcheck(&format!("fused {opts:?}"), &logits, &dlogits, f);
            }
        }
    }
}

// nll_loss: reductions, weights, ignore_index, a K-dimensional input.
#[test]
fn nll_loss_gradient() {
    let mut rng = Rng::new(23, 0);
    let w = [0.5, 1.0, 2.0];
    for (shape, targets) in [(vec![4, 3], vec![0, 2, 1, 2]), (vec![2, 3, 2], vec![0, 1, 2, 1])] {
        let target_shape: Vec<usize> =
            vec![shape[0]].into_iter().chain(shape[2..].to_vec()).collect();
        let log_probs = random(&mut rng, &shape, -3.0, 0.0);
        for weight in [None, Some(&w[..])] {
            for ignore_index in [-100, 1] {
                for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                    let opts = NllLoss { weight, ignore_index, reduction };
                    let dloss = upstream(&mut rng, reduction, &target_shape);
                    let out =
                        loss::nll_loss_with_dloss(&log_probs, &targets, &opts, &dloss).unwrap();
                    let f = |x: &Tensor| {
                        objective(&loss::nll_loss(x, &targets, &opts).unwrap().loss, &dloss)
                    };
                    gradcheck(
                        &format!("nll_loss {shape:?} {opts:?}"),
                        &log_probs,
                        &out.dlog_probs,
                        f,
                    );
                }
            }
        }
    }
}

// softmax_backward and log_softmax_backward, last and inner dimensions,
// for L = Σ g · y.
#[test]
fn softmax_and_log_softmax_backward() {
    let mut rng = Rng::new(24, 0);
    for (shape, dim) in [(vec![6], 0), (vec![3, 5], 1), (vec![2, 3, 2, 2], 1), (vec![3, 4], 0)] {
        let x = random(&mut rng, &shape, -3.0, 3.0);
        let g = random(&mut rng, &shape, -1.0, 1.0);

        let y = loss::softmax(&x, dim).unwrap();
        let dx = loss::softmax_backward(&y, &g, dim).unwrap();
        let f = |x: &Tensor| objective(&loss::softmax(x, dim).unwrap(), &g);
        gradcheck(&format!("softmax {shape:?} dim {dim}"), &x, &dx, f);

        let y = loss::log_softmax(&x, dim).unwrap();
        let dx = loss::log_softmax_backward(&y, &g, dim).unwrap();
        let f = |x: &Tensor| objective(&loss::log_softmax(x, dim).unwrap(), &g);
        gradcheck(&format!("log_softmax {shape:?} dim {dim}"), &x, &dx, f);
    }
}
