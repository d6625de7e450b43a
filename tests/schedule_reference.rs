//! Learning rate schedules against PyTorch: the rate (and cycled momentum)
//! after each scheduler step, in f64.

mod common;

use common::tensor;
use serde_json::Value;
use xent::optim::{Anneal, OneCycle, Schedule};

/// StepLR and OneCycleLR use PyTorch's f64 formulas and agree to rounding.
/// PyTorch's CosineAnnealingLR is recursive; the closed form differs from it
/// by up to 5e-16 absolute (relative 5e-15 of a rate of 0.1), and the atol
/// covers rates near 0 at `T_max`.
const RTOL: f64 = 1e-12;
const ATOL: f64 = 1e-15;

/// Asserts `|got - want| <= atol + rtol * |want|` for every step.
fn assert_close_f64(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= atol + rtol * w.abs(), "{what}: step {k}: got {g}, want {w}");
    }
}

/// The schedule a case's `op` and `options` describe.
fn schedule(op: &str, options: &Value) -> Schedule {
    let f = |key: &str| options[key].as_f64().unwrap_or_else(|| panic!("option {key}"));
    let n = |key: &str| options[key].as_u64().unwrap_or_else(|| panic!("option {key}")) as usize;
    let b = |key: &str| options[key].as_bool().unwrap_or_else(|| panic!("option {key}"));
    let schedule = match op {
        "torch.optim.lr_scheduler.StepLR" => {
            Schedule::Step { base_lr: f("base_lr"), step_size: n("step_size"), gamma: f("gamma") }
        }
        "torch.optim.lr_scheduler.CosineAnnealingLR" => {
            Schedule::Cosine { base_lr: f("base_lr"), t_max: n("T_max"), eta_min: f("eta_min") }
        }
        "torch.optim.lr_scheduler.OneCycleLR" => Schedule::OneCycle(OneCycle {
            max_lr: f("max_lr"),
            total_steps: n("total_steps"),
            pct_start: f("pct_start"),
            anneal: match options["anneal_strategy"].as_str() {
                Some("cos") => Anneal::Cos,
                Some("linear") => Anneal::Linear,
                other => panic!("anneal_strategy {other:?}"),
            },
            div_factor: f("div_factor"),
            final_div_factor: f("final_div_factor"),
            three_phase: b("three_phase"),
            cycle_momentum: b("cycle_momentum"),
            base_momentum: f("base_momentum"),
            max_momentum: f("max_momentum"),
        }),
        other => panic!("unknown scheduler op {other}"),
    };
    schedule.validate().expect("reference schedules are valid");
    schedule
}

// tests/fixtures/lr_schedulers.json, every case:
// steplr_lr0.1_step3_gamma0.5, steplr_lr0.05_step2_gamma0.1,
// cosine_lr0.1_tmax10_etamin0.0, cosine_lr0.1_tmax8_etamin0.001 (both past
// T_max), onecycle_sgd_cos_2phase_steps20, onecycle_sgd_linear_2phase_steps20,
// onecycle_sgd_cos_3phase_steps12, onecycle_adam_cos_2phase_steps10.
#[test]
fn schedules_match_pytorch() {
    let cases = common::cases("lr_schedulers.json");
    let mut checked = 0;
    let mut compared = 0;
    for case in &cases {
        let name = case["name"].as_str().expect("case name");
        let op = case["op"].as_str().expect("op");
        let schedule = schedule(op, &case["options"]);
        let options = &case["options"];
        let steps = options["num_steps"].as_u64().or(options["total_steps"].as_u64());
        let steps = steps.expect("num_steps or total_steps") as usize;

        // Every output the case records, by name; an unknown one fails.
        let outputs = case["outputs"].as_object().expect("outputs is a map");
        for (key, value) in outputs {
            let want = tensor(value).data;
            let what = format!("{name}: {key}");
            match key.as_str() {
                "lr" | "lr_closed_form" => {
                    assert_eq!(want.len(), steps + 1, "{what}: entries");
                    let got: Vec<f64> = (0..=steps).map(|k| schedule.lr_at(k)).collect();
                    assert_close_f64(&what, &got, &want, ATOL, RTOL);
                }
                "momentum" | "beta1" => {
                    let got: Vec<f64> = (0..=steps)
                        .map(|k| schedule.momentum_at(k).expect("onecycle cycles momentum"))
                        .collect();
                    assert_close_f64(&what, &got, &want, ATOL, RTOL);
                }
                "phase_end_steps" => {
                    let Schedule::OneCycle(one_cycle) = &schedule else {
                        panic!("{what}: not a onecycle case");
                    };
                    assert_eq!(one_cycle.phase_end_steps(), want, "{what}");
                }
                other => panic!("{name}: unchecked output {other}"),
            }
            compared += 1;
        }
        checked += 1;
    }
    assert_eq!(checked, 8, "lr_schedulers.json cases checked");
    // lr everywhere; lr_closed_form for the 2 cosine cases; momentum or
    // beta1 and phase_end_steps for the 4 onecycle cases.
    assert_eq!(compared, 8 + 2 + 4 * 2);
}

// tests/fixtures/lr_schedulers.json, onecycle_sgd_cos_2phase_steps20: the
// command-line form with its defaults gives the same schedule.
#[test]
fn parsed_onecycle_defaults_match_pytorch() {
    let case = common::case("lr_schedulers.json", "onecycle_sgd_cos_2phase_steps20");
    let parsed = Schedule::parse("onecycle", 0.1, 20).unwrap();
    assert_eq!(parsed, schedule(case["op"].as_str().unwrap(), &case["options"]));
}
