//! Shared helpers for the integration tests: loading the PyTorch reference
//! fixtures and comparing with stated tolerances.
#![allow(dead_code)]

use serde_json::Value;
use std::path::PathBuf;
use xent::Tensor;

/// A tensor from a fixture, values widened to f64 (`i64` and `bool` too).
#[derive(Clone, Debug)]
pub struct RefTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl RefTensor {
    /// The values as an xent tensor (every fixture input is exact in f32).
    pub fn tensor(&self) -> Tensor {
        Tensor::from_vec(&self.shape, self.f32()).expect("fixture shape matches its data")
    }

    pub fn f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }

    pub fn i64(&self) -> Vec<i64> {
        self.data.iter().map(|&v| v as i64).collect()
    }
}

/// Path of a fixture file under `tests/fixtures`.
pub fn fixture_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(file)
}

/// A whole fixture file.
pub fn load(file: &str) -> Value {
    let path = fixture_path(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The cases of a fixture file.
pub fn cases(file: &str) -> Vec<Value> {
    load(file)["cases"].as_array().expect("fixture has a cases array").clone()
}

/// One case by name.
pub fn case(file: &str, name: &str) -> Value {
    cases(file)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{file}: no case {name}"))
}

/// Parses a fixture tensor object.
pub fn tensor(v: &Value) -> RefTensor {
    let shape = v["shape"]
        .as_array()
        .unwrap_or_else(|| panic!("not a tensor: {v}"))
        .iter()
        .map(|d| d.as_u64().expect("shape entries are integers") as usize)
        .collect();
    let values = v["data"].as_array().expect("tensor has data").iter().map(number);
    // f32 values are printed as the shortest decimal that round-trips in f32:
    // read them as f32, or an exact comparison would see a spurious difference.
    let data = if v["dtype"] == "f32" {
        values.map(|x| f64::from(x as f32)).collect()
    } else {
        values.collect()
    };
    RefTensor { shape, data }
}

/// A JSON number, boolean, or one of "inf", "-inf", "nan".
pub fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().expect("finite JSON number"),
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => match s.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            "nan" => f64::NAN,
            other => panic!("unexpected number string {other:?}"),
        },
        other => panic!("not a number: {other}"),
    }
}

/// Asserts `|got - want| <= atol + rtol * |want|` elementwise, NaN and
/// infinities matching exactly. On failure names the worst index and both
/// values.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs reference {}", got.len(), want.len());
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(g);
        if w.is_nan() || w.is_infinite() || g.is_nan() || g.is_infinite() {
            let same = (w.is_nan() && g.is_nan()) || g == w;
            assert!(same, "{what}[{i}]: got {g}, want {w}");
            continue;
        }
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        if excess > 0.0 && worst.is_none_or(|(_, e)| excess > e) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: worst index {i}: got {}, want {} (atol {atol}, rtol {rtol})",
            got[i], want[i]
        );
    }
}
