//! The `xent explain` binary: the step-by-step table, `--json` checked
//! against `xent::loss`, extreme logits, and every refusal (non-zero exit and
//! a message that names the problem).

use serde_json::Value;
use std::process::{Command, Output};
use xent::loss::{self, CrossEntropy, Reduction, Targets};
use xent::Tensor;

fn xent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xent")).args(args).output().expect("the xent binary runs")
}

/// Runs `xent explain ARGS`, expecting success; returns stdout.
fn explain(args: &[&str]) -> String {
    let out = xent(&[&["explain"], args].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "xent explain {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs `xent explain ARGS --json` and parses the object.
fn explain_json(args: &[&str]) -> Value {
    let text = explain(&[args, &["--json"]].concat());
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// Runs `xent explain ARGS`, expecting a refusal with exit code `code` and
/// a message on stderr containing every one of `needles`.
fn refused(args: &[&str], code: i32, needles: &[&str]) {
    let out = xent(&[&["explain"], args].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: stderr {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{args:?}: {needle:?} not in {stderr}");
    }
    assert!(out.stdout.is_empty(), "{args:?}: printed to stdout on failure");
}

/// A JSON number, or one of the strings "nan", "inf", "-inf".
fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().expect("a float"),
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a number string: {s}")),
        other => panic!("not a number: {other}"),
    }
}

/// A JSON list of numbers, or a list of such lists, flattened.
fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        other => vec![num(other)],
    }
}

fn assert_matches(what: &str, json: &Value, want: &[f32]) {
    let got = flat(json);
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, &w)) in got.iter().zip(want).enumerate() {
        let w = f64::from(w);
        let ok = (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-6 + 1e-5 * w.abs();
        assert!(ok, "{what}[{i}]: json {g}, library {w}");
    }
}

/// The CLI's `--json` numbers against the library's functions for the same
/// logits, targets and options.
fn check_against_library(json: &Value, logits: &Tensor, targets: Targets<'_>, opts: CrossEntropy) {
    let probs = loss::softmax(logits, 1).unwrap();
    let log_probs = loss::log_softmax(logits, 1).unwrap();
    let none = CrossEntropy { reduction: Reduction::None, ..opts };
    let losses = loss::cross_entropy(logits, targets, &none).unwrap();
    let reduced = loss::cross_entropy(logits, targets, &opts).unwrap();
    assert_matches("probs", &json["probs"], probs.data());
    assert_matches("log_probs", &json["log_probs"], log_probs.data());
    assert_matches("losses", &json["losses"], losses.loss.data());
    assert_matches("loss", &json["loss"], reduced.loss.data());
    assert_matches("dlogits", &json["dlogits"], reduced.dlogits.data());
    assert_eq!(json["loss"].is_array(), opts.reduction == Reduction::None);
}

fn logits_2x3() -> Tensor {
    Tensor::from_vec(&[2, 3], vec![2.0, 1.0, 0.1, 0.5, 2.5, 0.3]).unwrap()
}

// The table shows every step with its formula, and the loss the library
// computes.
#[test]
fn table_shows_each_step() {
    let text = explain(&["--logits", "2,1,0.1; 0.5, 2.5, 0.3", "--targets", "0,1"]);
    for needle in [
        "row 0: target class 0",
        "row 1: target class 1",
        "max(z)",
        "z - max",
        "exp(z - max)",
        "sum(e)",
        "logsumexp(z) = max + log(sum)",
        "p = exp(z - max) / sum",
        "log_p = z - logsumexp(z)",
        "y = one-hot(1)",
        "loss = logsumexp(z) - z[y]",
        "reduction mean",
        "dlogits = (p - y) / 2.0000",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let out = loss::cross_entropy(&logits_2x3(), Targets::Classes(&[0, 1]), &Default::default());
    let want = format!("loss = {:.4}\n", out.unwrap().loss.data()[0]);
    assert!(text.contains(&want), "missing {want:?} in\n{text}");
}

// --json: keys and values against the library, plain class targets.
#[test]
fn json_matches_library_for_class_targets() {
    let json = explain_json(&["--logits", "2,1,0.1;0.5,2.5,0.3", "--targets", "0,1"]);
    for key in ["probs", "log_probs", "losses", "loss", "dlogits"] {
        assert!(json.get(key).is_some(), "missing key {key}");
    }
    check_against_library(&json, &logits_2x3(), Targets::Classes(&[0, 1]), CrossEntropy::default());
}

// --json with weights, label smoothing, an ignored row and reduction sum.
#[test]
fn json_matches_library_with_every_option() {
    let args = [
        "--logits",
        "2,1,0.1;0.5,2.5,0.3;-1,0,1",
        "--targets",
        "0,1,2",
        "--weight",
        "0.5,2,1",
        "--label-smoothing",
        "0.1",
        "--ignore-index",
        "2",
        "--reduction",
        "sum",
    ];
    let json = explain_json(&args);
    let logits = Tensor::from_vec(&[3, 3], vec![2.0, 1.0, 0.1, 0.5, 2.5, 0.3, -1.0, 0.0, 1.0]);
    let w = [0.5, 2.0, 1.0];
    let opts = CrossEntropy {
        weight: Some(&w),
        ignore_index: 2,
        label_smoothing: 0.1,
        reduction: Reduction::Sum,
    };
    check_against_library(&json, &logits.unwrap(), Targets::Classes(&[0, 1, 2]), opts);
    assert_eq!(flat(&json["dlogits"])[6..], [0.0, 0.0, 0.0]);
}

// --json with probability targets and reduction none: loss is a list.
#[test]
fn json_matches_library_for_probability_targets() {
    let args = [
        "--logits",
        "2,1,0.1;0.5,2.5,0.3",
        "--target-probs",
        "0.7,0.2,0.1;0,1,0",
        "--reduction",
        "none",
    ];
    let json = explain_json(&args);
    let probs = Tensor::from_vec(&[2, 3], vec![0.7, 0.2, 0.1, 0.0, 1.0, 0.0]).unwrap();
    let opts = CrossEntropy { reduction: Reduction::None, ..CrossEntropy::default() };
    check_against_library(&json, &logits_2x3(), Targets::Probs(&probs), opts);
}

// Logits 1000 and 0 with target 1: a loss of exactly 1000 and the finite
// gradient (1, -1); the naive exp(1000) would overflow.
#[test]
fn extreme_logits_give_loss_1000() {
    let text = explain(&["--logits", "1000,0", "--targets", "1"]);
    assert!(text.contains("loss = 1000.0000\n"), "{text}");
    let json = explain_json(&["--logits", "1000,0", "--targets", "1"]);
    assert_eq!(num(&json["loss"]), 1000.0);
    assert_eq!(flat(&json["dlogits"]), [1.0, -1.0]);
}

// Every target ignored: the mean is NaN, written as the string "nan"; the
// gradient is zero.
#[test]
fn all_ignored_mean_is_the_string_nan() {
    let json = explain_json(&["--logits", "1,2;3,4", "--targets", "1,1", "--ignore-index", "1"]);
    assert_eq!(json["loss"], "nan");
    assert_eq!(flat(&json["dlogits"]), [0.0; 4]);
    let help = String::from_utf8(xent(&["explain", "--help"]).stdout).unwrap();
    assert!(help.contains("\"nan\"") && help.contains("\"-inf\""), "{help}");
}

// Each refusal: exit code and a message naming the problem.
#[test]
fn bad_input_is_refused_clearly() {
    let l = "--logits";
    let t = "--targets";
    let p = "--target-probs";
    refused(&[l, "1,2;3", t, "0,1"], 2, &["--logits", "row 1 has 1 value", "row 0 has 2 values"]);
    refused(&[l, "1,abc", t, "0"], 2, &["--logits", "row 0, value 1", "\"abc\" is not a number"]);
    refused(
        &[l, "1,2;3,4", p, "0.5,0.4;1,0"],
        2,
        &["--target-probs", "row 0 sums to 0.9", "not 1"],
    );
    refused(&[l, "1,2;3,4", p, "1,0;1.5,-0.5"], 2, &["--target-probs", "row 1", "negative"]);
    refused(&[l, "1,2;3,4", t, "0,2"], 2, &["--targets", "row 1 has class 2", "2 classes"]);
    refused(&[l, "1,2;3,4", t, "0,-1"], 2, &["row 1 has class -1"]);
    refused(&[l, "1,2;3,4", t, "0"], 2, &["--targets has 1 value", "2 rows"]);
    refused(&[l, "1,2;3,4", p, "1,0"], 2, &["--target-probs has 1 row", "2 rows"]);
    refused(&[l, "1,2", t, "0", "--weight", "1,2,3"], 2, &["--weight has 3 values", "2 classes"]);
    refused(&[l, "1,2", t, "0", p, "1,0"], 2, &["--targets", "--target-probs"]);
    refused(&[l, "1,2"], 2, &["--targets", "--target-probs"]);
    refused(&[l, "1,2", t, "0", "--label-smoothing", "1.5"], 2, &["--label-smoothing", "1.5"]);
    refused(&[l, "1,2", p, "1,0", "--ignore-index", "0"], 2, &["--ignore-index 0"]);
    refused(&[l, "1,2", t, "0", "--reduction", "avg"], 2, &["avg"]);
    refused(&[l, "1,inf", t, "0"], 2, &["row 0, value 1", "inf is not a finite number"]);
}

// A logit of -inf masks a class, as in PyTorch: probability 0, finite loss.
#[test]
fn negative_infinity_masks_a_class() {
    let out = xent(&["explain", "--logits", "1,-inf,1", "--targets", "0", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let probs: Vec<f64> = json["probs"][0].as_array().unwrap().iter().map(num).collect();
    assert_eq!(probs, vec![0.5, 0.0, 0.5]);
    assert!((num(&json["loss"]) - std::f64::consts::LN_2).abs() < 1e-6);
}

// What is refused says the rule: -inf is a logit's mask, +inf and NaN are
// refused everywhere, and a number f32 cannot hold is out of range rather
// than an infinity (not even -1e39 as a mask).
#[test]
fn refusals_of_non_finite_values_state_the_rule() {
    let (l, t, p) = ("--logits", "--targets", "--target-probs");
    let rule = ["a logit may be -inf, which masks its class out", "not +inf or NaN"];
    for value in ["inf", "+inf", "nan", "NaN", "infinity"] {
        let logits = format!("1,{value}");
        refused(&[l, &logits, t, "0"], 2, &[&format!("{value} is not a finite number"), rule[0]]);
        refused(&[l, &logits, t, "0"], 2, &[rule[1]]);
    }
    for value in ["1e39", "-1e39", "3.5e38"] {
        let logits = format!("1,{value}");
        refused(&[l, &logits, t, "0"], 2, &[&format!("{value} is beyond f32's range")]);
    }
    refused(&[l, "1,2", p, "1,-inf"], 2, &["-inf is not a finite number", "finite values only"]);
    refused(&[l, "1,2", t, "0", "--weight", "1,nan"], 2, &["--weight takes finite values only"]);
}

// Values wider than the usual column: each column is widened to fit, so
// neighbours stay apart and the headings stay above their values.
#[test]
fn wide_values_keep_their_columns_apart() {
    let text = explain(&["--logits", "1e5,-1e5", "--targets", "0"]);
    assert!(!text.contains("0000-"), "columns run together:\n{text}");
    let line = |step: &str| {
        text.lines().find(|l| l.starts_with(&format!("  {step} "))).expect("the step's line")
    };
    let z: Vec<&str> = line("z").split_whitespace().collect();
    assert_eq!(z[z.len() - 2..], ["100000.0000", "-100000.0000"], "{text}");

    // Each heading ends where its column's values end.
    let (heading, values) = (line("step"), line("log_p"));
    for (name, value) in [("class 0", "0.0000"), ("class 1", "-200000.0000")] {
        let end = |line: &str, word: &str| line.find(word).expect("in the line") + word.len();
        assert_eq!(end(heading, name), end(values, value), "{name}:\n{text}");
    }
}
