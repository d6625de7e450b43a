//! `xent::loss` against PyTorch: every case of `softmax.json`,
//! `cross_entropy.json`, `nll_loss.json` and `naive_vs_stable_ce.json`
//! (values and gradients, and PyTorch's own float32 results where given),
//! plus the fused training path against the general cross-entropy.

mod common;

use common::{assert_close, tensor, RefTensor};
use serde_json::Value;
use xent::loss::{self, CrossEntropy, NllLoss, Reduction, Targets};
use xent::rng::Rng;
use xent::Tensor;

/// Forward values (softmax, losses) against float64 references.
const FWD: (f64, f64) = (1e-6, 1e-5);
/// Gradients against float64 references: tighter than the 1e-4/1e-3 rule,
/// since every lane is computed in f64.
const GRAD: (f64, f64) = (1e-6, 1e-5);
/// Against PyTorch's float32 results, which carry their own rounding.
const F32_FWD: (f64, f64) = (1e-6, 1e-4);
const F32_GRAD: (f64, f64) = (1e-4, 1e-3);

fn close(what: &str, got: &Tensor, want: &Value, (atol, rtol): (f64, f64)) {
    let want = tensor(want);
    assert_eq!(got.shape(), want.shape.as_slice(), "{what}: shape");
    assert_close(what, got.data(), &want.data, atol, rtol);
}

/// `options.dim`, with PyTorch's negative dims counted from the end.
fn dim(case: &Value, rank: usize) -> usize {
    let d = case["options"]["dim"].as_i64().expect("dim option");
    if d < 0 {
        (rank as i64 + d) as usize
    } else {
        d as usize
    }
}

fn reduction(case: &Value) -> Reduction {
    case["options"]["reduction"].as_str().expect("reduction option").parse().expect("known")
}

/// The optional `weight` input of a loss case.
fn weight(case: &Value) -> Option<Vec<f32>> {
    case["inputs"].get("weight").map(|w| tensor(w).f32())
}

/// Owned class or probability targets of a loss case.
enum OwnedTargets {
    Classes(Vec<i64>),
    Probs(Tensor),
}

impl OwnedTargets {
    fn of(case: &Value) -> OwnedTargets {
        let target = &case["inputs"]["target"];
        let t: RefTensor = tensor(target);
        match target["dtype"].as_str() {
            Some("i64") => OwnedTargets::Classes(t.i64()),
            _ => OwnedTargets::Probs(t.tensor()),
        }
    }

    fn view(&self) -> Targets<'_> {
        match self {
            OwnedTargets::Classes(ys) => Targets::Classes(ys),
            OwnedTargets::Probs(t) => Targets::Probs(t),
        }
    }
}

// softmax.json, every case: softmax / log_softmax forward, backward of
// sum(grad_outputs.output * output), and the float32 blocks of the extreme
// cases.
#[test]
fn softmax_fixture_every_case() {
    let cases = common::cases("softmax.json");
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let x = tensor(&case["inputs"]["x"]).tensor();
        let g = tensor(&case["grad_outputs"]["output"]).tensor();
        let d = dim(case, x.rank());
        let (y, dx) = match case["op"].as_str() {
            Some("torch.softmax") => {
                let y = loss::softmax(&x, d).unwrap();
                let dx = loss::softmax_backward(&y, &g, d).unwrap();
                (y, dx)
            }
            Some("torch.log_softmax") => {
                let y = loss::log_softmax(&x, d).unwrap();
                let dx = loss::log_softmax_backward(&y, &g, d).unwrap();
                (y, dx)
            }
            other => panic!("{name}: unexpected op {other:?}"),
        };
        close(&format!("{name} output"), &y, &case["outputs"]["output"], FWD);
        close(&format!("{name} dx"), &dx, &case["grads"]["x"], GRAD);
        if let Some(f32_out) = case.get("outputs_f32") {
            close(&format!("{name} output_f32"), &y, &f32_out["output"], F32_FWD);
            close(&format!("{name} dx_f32"), &dx, &case["grads_f32"]["x"], F32_GRAD);
        }
        check_row_kernels(name, &x, &y, d, case["op"] == "torch.softmax");
    }
    assert_eq!(cases.len(), 10, "softmax.json: cases checked");
}

/// The row kernels agree with the general functions on last-dim cases.
fn check_row_kernels(name: &str, x: &Tensor, y: &Tensor, dim: usize, is_softmax: bool) {
    if dim + 1 != x.rank() {
        return;
    }
    let mut fast = Tensor::default();
    if is_softmax {
        loss::softmax_rows_into(x, &mut fast).unwrap();
    } else {
        loss::log_softmax_rows_into(x, &mut fast).unwrap();
    }
    let want: Vec<f64> = y.data().iter().map(|&v| f64::from(v)).collect();
    assert_close(&format!("{name} row kernel"), fast.data(), &want, 1e-6, 1e-5);
}

// cross_entropy.json, every case: loss and dL/dinput with L =
// sum(grad_outputs.loss * loss), float32 blocks where given; and the fused
// path on every (N, C) class-index case with a scalar loss.
#[test]
fn cross_entropy_fixture_every_case() {
    let cases = common::cases("cross_entropy.json");
    let mut fused_checked = 0;
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let logits = tensor(&case["inputs"]["input"]).tensor();
        let targets = OwnedTargets::of(case);
        let w = weight(case);
        let opts = CrossEntropy {
            weight: w.as_deref(),
            ignore_index: case["options"]["ignore_index"].as_i64().expect("ignore_index"),
            label_smoothing: case["options"]["label_smoothing"].as_f64().expect("eps") as f32,
            reduction: reduction(case),
        };
        let dloss = tensor(&case["grad_outputs"]["loss"]).tensor();
        let out = loss::cross_entropy_with_dloss(&logits, targets.view(), &opts, &dloss)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        close(&format!("{name} loss"), &out.loss, &case["outputs"]["loss"], FWD);
        close(&format!("{name} dinput"), &out.dlogits, &case["grads"]["input"], GRAD);
        if let Some(f32_out) = case.get("outputs_f32") {
            close(&format!("{name} loss_f32"), &out.loss, &f32_out["loss"], F32_FWD);
            close(
                &format!("{name} dinput_f32"),
                &out.dlogits,
                &case["grads_f32"]["input"],
                F32_GRAD,
            );
        }
        if check_fused(name, &logits, &targets, &opts, case) {
            fused_checked += 1;
        }
    }
    assert_eq!(cases.len(), 43, "cross_entropy.json: cases checked");
    assert_eq!(fused_checked, 18, "cross_entropy.json: cases checked on the fused path");
}

/// Runs `cross_entropy_classes_into` on a case it supports; false otherwise.
fn check_fused(
    name: &str,
    logits: &Tensor,
    targets: &OwnedTargets,
    opts: &CrossEntropy<'_>,
    case: &Value,
) -> bool {
    let OwnedTargets::Classes(ys) = targets else { return false };
    if logits.rank() != 2 || opts.reduction == Reduction::None {
        return false;
    }
    let mut dlogits = Tensor::default();
    let value = loss::cross_entropy_classes_into(logits, ys, opts, &mut dlogits).unwrap();
    let want = tensor(&case["outputs"]["loss"]).data;
    assert_close(&format!("{name} fused loss"), &[value as f32], &want, FWD.0, FWD.1);
    close(&format!("{name} fused dinput"), &dlogits, &case["grads"]["input"], (1e-6, 1e-5));
    true
}

// nll_loss.json, every case: loss and dL/dinput.
#[test]
fn nll_loss_fixture_every_case() {
    let cases = common::cases("nll_loss.json");
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let log_probs = tensor(&case["inputs"]["input"]).tensor();
        let targets = tensor(&case["inputs"]["target"]).i64();
        let w = weight(case);
        let opts = NllLoss {
            weight: w.as_deref(),
            ignore_index: case["options"]["ignore_index"].as_i64().expect("ignore_index"),
            reduction: reduction(case),
        };
        let dloss = tensor(&case["grad_outputs"]["loss"]).tensor();
        let out = loss::nll_loss_with_dloss(&log_probs, &targets, &opts, &dloss)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        close(&format!("{name} loss"), &out.loss, &case["outputs"]["loss"], FWD);
        close(&format!("{name} dinput"), &out.dlog_probs, &case["grads"]["input"], GRAD);
    }
    assert_eq!(cases.len(), 10, "nll_loss.json: cases checked");
}

/// The tutorial formula in f32: `-Σ onehot · ln(exp(z) / Σ exp(z))`.
fn naive_loss(z: &[f32], y: usize) -> f32 {
    let sum: f32 = z.iter().map(|z| z.exp()).sum();
    -z.iter()
        .enumerate()
        .map(|(c, z)| if c == y { 1.0 } else { 0.0 } * (z.exp() / sum).ln())
        .sum::<f32>()
}

// naive_vs_stable_ce.json, case naive_vs_stable_per_row: the stable
// per-row losses and their gradient match float64 and PyTorch's float32
// results everywhere; the naive f32 formula is non-finite on exactly the
// rows where PyTorch's naive column is.
#[test]
fn naive_vs_stable_every_row() {
    let cases = common::cases("naive_vs_stable_ce.json");
    assert_eq!(cases.len(), 1, "naive_vs_stable_ce.json: cases");
    let case = &cases[0];
    let logits = tensor(&case["inputs"]["logits"]).tensor();
    let targets = tensor(&case["inputs"]["target"]).i64();

    // Stable: reduction none, and dlogits of the summed losses.
    let opts = CrossEntropy { reduction: Reduction::None, ..CrossEntropy::default() };
    let out = loss::cross_entropy(&logits, Targets::Classes(&targets), &opts).unwrap();
    close("stable losses", &out.loss, &case["outputs"]["reference_f64"], FWD);
    close("stable losses f32", &out.loss, &case["outputs_f32"]["stable_log_softmax"], F32_FWD);
    close("stable dlogits", &out.dlogits, &case["grads"]["stable_log_softmax"], GRAD);
    let grad_f32 = &case["grads_f32"]["stable_log_softmax"];
    close("stable dlogits f32", &out.dlogits, grad_f32, F32_GRAD);
    assert!(out.loss.data().iter().chain(out.dlogits.data()).all(|v| v.is_finite()));

    // Naive: the failure the fixture documents, row by row.
    let naive_ref = tensor(&case["outputs_f32"]["naive_exp_sum"]).data;
    let mut failures = 0;
    for (i, (&y, want)) in targets.iter().zip(&naive_ref).enumerate() {
        let naive = naive_loss(logits.row(i), y as usize);
        assert_eq!(naive.is_finite(), want.is_finite(), "row {i}: naive {naive}, PyTorch {want}");
        failures += usize::from(!naive.is_finite());
    }
    assert_eq!(failures, 8, "rows where the naive formula breaks");
}

/// Random `[n, k]` logits in `[-6, 6)` with a few extreme entries, and
/// targets of which about one in five is `ignore`.
fn random_batch(rng: &mut Rng, n: usize, k: usize, ignore: i64) -> (Tensor, Vec<i64>) {
    let mut logits = Tensor::zeros(&[n, k]);
    for v in logits.data_mut() {
        *v = if rng.below(20) == 0 { rng.uniform(-1e4, 1e4) } else { rng.uniform(-6.0, 6.0) };
    }
    let targets =
        (0..n).map(|_| if rng.below(5) == 0 { ignore } else { rng.below(k) as i64 }).collect();
    (logits, targets)
}

// The fused training path against the general cross-entropy on random
// batches, for every combination of weights, ignore_index, smoothing and
// mean/sum.
#[test]
fn fused_path_matches_general_cross_entropy() {
    let mut rng = Rng::new(11, 0);
    let mut dlogits = Tensor::default();
    let mut combinations = 0;
    for (n, k) in [(1, 2), (7, 3), (32, 10), (5, 100)] {
        let w: Vec<f32> = (0..k).map(|_| rng.uniform(0.1, 3.0)).collect();
        let (logits, targets) = random_batch(&mut rng, n, k, 1);
        for weight in [None, Some(w.as_slice())] {
            for ignore_index in [-100, 1] {
                for label_smoothing in [0.0, 0.1, 1.0] {
                    for reduction in [Reduction::Mean, Reduction::Sum] {
                        let opts =
                            CrossEntropy { weight, ignore_index, label_smoothing, reduction };
                        let what = format!("n {n} k {k} {opts:?}");
                        let want = loss::cross_entropy(&logits, Targets::Classes(&targets), &opts)
                            .unwrap();
                        let got = loss::cross_entropy_classes_into(
                            &logits,
                            &targets,
                            &opts,
                            &mut dlogits,
                        )
                        .unwrap();
                        let want_loss = f64::from(want.loss.data()[0]);
                        assert_close(&what, &[got as f32], &[want_loss], 1e-6, 1e-5);
                        let want_d: Vec<f64> =
                            want.dlogits.data().iter().map(|&v| f64::from(v)).collect();
                        assert_close(&what, dlogits.data(), &want_d, 1e-6, 1e-5);
                        combinations += 1;
                    }
                }
            }
        }
    }
    assert_eq!(combinations, 4 * 2 * 2 * 3 * 2);
}

// A batch whose every target is ignored: the mean is NaN as in PyTorch, the
// sum 0, and the fused path writes an all-zero dlogits over stale contents.
#[test]
fn fused_all_ignored_gives_nan_mean_and_zero_gradient() {
    let mut rng = Rng::new(12, 0);
    let (logits, _) = random_batch(&mut rng, 6, 4, 0);
    let targets = [3; 6];
    let w = [1.0, 2.0, 0.5, 1.5];
    let mut dlogits = Tensor::full(&[6, 4], 7.0);
    for (reduction, smoothing, weight) in [
        (Reduction::Mean, 0.0, None),
        (Reduction::Mean, 0.1, Some(&w[..])),
        (Reduction::Sum, 0.0, None),
    ] {
        let opts = CrossEntropy { weight, ignore_index: 3, label_smoothing: smoothing, reduction };
        let value =
            loss::cross_entropy_classes_into(&logits, &targets, &opts, &mut dlogits).unwrap();
        if reduction == Reduction::Mean {
            assert!(value.is_nan(), "{opts:?}: {value}");
        } else {
            assert_eq!(value, 0.0);
        }
        assert!(dlogits.data().iter().all(|&d| d == 0.0), "{opts:?}");
    }
}

// The fused path keeps the caller's buffer: no reallocation across steps.
#[test]
fn fused_path_reuses_the_buffer() {
    let mut rng = Rng::new(13, 0);
    let (logits, targets) = random_batch(&mut rng, 16, 10, -100);
    let mut dlogits = Tensor::zeros(&[16, 10]);
    let ptr = dlogits.data().as_ptr();
    for _ in 0..3 {
        loss::cross_entropy_classes_into(&logits, &targets, &CrossEntropy::default(), &mut dlogits)
            .unwrap();
    }
    assert_eq!(dlogits.data().as_ptr(), ptr);
}

// Refusals: targets out of range, shapes, weights, smoothing, probability
// targets with ignore_index >= 0, and reduction none on the fused path.
#[test]
fn bad_inputs_are_refused_with_clear_errors() {
    let logits = Tensor::from_vec(&[2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let ce = |targets: Targets<'_>, opts: &CrossEntropy<'_>| {
        loss::cross_entropy(&logits, targets, opts).unwrap_err().to_string()
    };
    let text = ce(Targets::Classes(&[0, 3]), &CrossEntropy::default());
    assert!(text.contains("target[1] = 3") && text.contains("0..=2"), "{text}");
    let text = ce(Targets::Classes(&[0, 1, 2]), &CrossEntropy::default());
    assert!(text.contains("[2]") && text.contains("[3]"), "{text}");
    let w = [1.0, 1.0];
    let text =
        ce(Targets::Classes(&[0, 1]), &CrossEntropy { weight: Some(&w), ..Default::default() });
    assert!(text.contains("weight has 2 values") && text.contains("3 classes"), "{text}");
    let text = ce(
        Targets::Classes(&[0, 1]),
        &CrossEntropy { label_smoothing: -0.1, ..Default::default() },
    );
    assert!(text.contains("label_smoothing"), "{text}");
    let probs = Tensor::full(&[2, 3], 1.0 / 3.0);
    let text = ce(Targets::Probs(&probs), &CrossEntropy { ignore_index: 0, ..Default::default() });
    assert!(text.contains("ignore_index 0"), "{text}");
    let wrong = Tensor::full(&[3, 2], 0.5);
    assert!(ce(Targets::Probs(&wrong), &CrossEntropy::default()).contains("[3, 2]"));

    // A negative ignore_index is unused with probability targets.
    assert!(loss::cross_entropy(&logits, Targets::Probs(&probs), &Default::default()).is_ok());
    let none = CrossEntropy { reduction: Reduction::None, ..Default::default() };
    let mut d = Tensor::default();
    assert!(loss::cross_entropy_classes_into(&logits, &[0, 1], &none, &mut d).is_err());
    let nll = loss::nll_loss(&logits, &[-1, 0], &NllLoss::default()).unwrap_err().to_string();
    assert!(nll.contains("target[0] = -1"), "{nll}");
}
