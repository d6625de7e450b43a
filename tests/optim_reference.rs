//! Optimiser trajectories against PyTorch: parameters and optimiser state
//! after each step of SGD, Adam and AdamW on given gradients.

mod common;

use common::{assert_close, tensor};
use serde_json::Value;
use xent::nn::Param;
use xent::optim::{Adam, Optimizer, OptimizerConfig, OptimizerKind, Sgd};

/// Parameters after steps. The project's bound for optimiser trajectories
/// is atol 1e-5, rtol 1e-4; the f32 updates agree to a few ulps (they pass
/// at atol 1e-7, rtol 2e-7), so this keeps a margin of about five.
const ATOL: f64 = 1e-7;
const RTOL: f64 = 1e-6;

/// State tensors (momentum buffers, moments) are compared relative to their
/// own scale, since Adam's `v` can be as small as 1e-20.
const STATE_RTOL: f64 = 1e-6;

/// A concrete optimiser, so the test can read its state.
enum Built {
    Sgd(Sgd),
    Adam(Adam),
}

impl Built {
    fn optimizer(&mut self) -> &mut dyn Optimizer {
        match self {
            Built::Sgd(sgd) => sgd,
            Built::Adam(adam) => adam,
        }
    }

    /// PyTorch's state entry `key` for the parameter at `index`.
    fn state(&self, index: usize, key: &str) -> Option<&[f32]> {
        match (self, key) {
            (Built::Sgd(sgd), "momentum_buffer") => sgd.momentum_buffer(index),
            (Built::Adam(adam), "exp_avg") => adam.exp_avg(index),
            (Built::Adam(adam), "exp_avg_sq") => adam.exp_avg_sq(index),
            (Built::Adam(adam), "max_exp_avg_sq") => adam.max_exp_avg_sq(index),
            _ => panic!("state key {key:?} is not kept by this optimizer"),
        }
    }

    /// Number of state entries (PyTorch's `step` included) the optimiser
    /// holds for parameter `index`, to check that the reference lists all.
    fn state_len(&self, index: usize) -> usize {
        match self {
            Built::Sgd(sgd) => usize::from(sgd.momentum_buffer(index).is_some()),
            Built::Adam(adam) => {
                let amsgrad = usize::from(adam.max_exp_avg_sq(index).is_some());
                usize::from(adam.step_count(index) > 0) * (3 + amsgrad)
            }
        }
    }
}

/// The config of a `torch.optim` call with these keyword arguments.
fn config(op: &str, options: &Value) -> OptimizerConfig {
    let kind = match op {
        "torch.optim.SGD" | "sgd" => OptimizerKind::Sgd,
        "torch.optim.Adam" | "adam" => OptimizerKind::Adam,
        "torch.optim.AdamW" | "adamw" => OptimizerKind::AdamW,
        other => panic!("unknown optimizer op {other}"),
    };
    let f = |key: &str| options[key].as_f64().unwrap_or_else(|| panic!("option {key}"));
    let mut config = OptimizerConfig::new(kind);
    config.lr = f("lr");
    config.weight_decay = f("weight_decay");
    assert_ne!(options["maximize"], true, "maximize is not supported");
    if kind == OptimizerKind::Sgd {
        config.momentum = f("momentum");
        config.dampening = f("dampening");
        config.nesterov = options["nesterov"].as_bool().expect("nesterov is a bool");
    } else {
        let betas = options["betas"].as_array().expect("betas is a pair");
        config.betas = (betas[0].as_f64().unwrap(), betas[1].as_f64().unwrap());
        config.eps = f("eps");
        config.amsgrad = options["amsgrad"].as_bool().expect("amsgrad is a bool");
    }
    config
}

/// Runs `config` from `params_initial` through `grads_per_step`, checking
/// `params_after_step` and `state_after_step` after every step. Returns the
/// number of tensors compared.
fn check_run(
    what: &str,
    config: &OptimizerConfig,
    params_initial: &Value,
    run: [&Value; 3],
) -> usize {
    let [grads_per_step, params_after_step, state_after_step] =
        run.map(|v| v.as_array().unwrap_or_else(|| panic!("{what}: missing per-step list")));
    assert!(!grads_per_step.is_empty(), "{what}: no steps");
    assert_eq!(grads_per_step.len(), params_after_step.len(), "{what}: steps");
    assert_eq!(grads_per_step.len(), state_after_step.len(), "{what}: steps");

    // Parameters in a fixed order, as a model hands them over.
    let initial = params_initial.as_object().expect("params_initial is a map");
    let names: Vec<&String> = initial.keys().collect();
    let mut params: Vec<Param> =
        names.iter().map(|n| Param::new(tensor(&initial[*n]).tensor())).collect();
    let mut built = match config.kind {
        OptimizerKind::Sgd => Built::Sgd(config.build_sgd().unwrap()),
        _ => Built::Adam(config.build_adam().unwrap()),
    };

    let mut compared = 0;
    for (t, ((grads, want_params), want_state)) in
        grads_per_step.iter().zip(params_after_step).zip(state_after_step).enumerate()
    {
        // One step on the given gradients.
        for (param, name) in params.iter_mut().zip(&names) {
            param.grad = tensor(&grads[name.as_str()]).tensor();
        }
        built.optimizer().step(&mut params.iter_mut());

        // Parameters, then every state entry PyTorch reports.
        for (i, (param, name)) in params.iter().zip(&names).enumerate() {
            let at = format!("{what}: step {}: {name}", t + 1);
            let want = tensor(&want_params[name.as_str()]);
            assert_eq!(param.value.shape(), &want.shape[..], "{at}");
            assert_close(&at, param.value.data(), &want.data, ATOL, RTOL);
            compared += 1;

            let state = want_state[name.as_str()].as_object().expect("state is a map");
            let mut entries = 0;
            for (key, value) in state {
                entries += 1;
                if key == "step" {
                    let Built::Adam(adam) = &built else { panic!("{at}: step for sgd") };
                    assert_eq!(Some(adam.step_count(i)), value.as_u64(), "{at}: step");
                    continue;
                }
                let want = tensor(value);
                let got = built.state(i, key).unwrap_or_else(|| panic!("{at}: no {key}"));
                let scale = want.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                assert_close(&format!("{at}: {key}"), got, &want.data, STATE_RTOL * scale, RTOL);
                compared += 1;
            }
            assert_eq!(entries, built.state_len(i), "{at}: state entries {state:?}");
        }
    }
    compared
}

// tests/fixtures/optimizers.json, every case: sgd_plain, sgd_momentum,
// sgd_nesterov, sgd_weight_decay, sgd_momentum_weight_decay,
// sgd_nesterov_weight_decay, sgd_momentum_dampening, adam,
// adam_weight_decay, adam_amsgrad, adam_tiny_grads, adamw,
// adamw_strong_decay_amsgrad.
#[test]
fn optimizers_match_pytorch() {
    let cases = common::cases("optimizers.json");
    let mut checked = 0;
    let mut compared = 0;
    for case in &cases {
        let name = case["name"].as_str().expect("case name");
        let config = config(case["op"].as_str().expect("op"), &case["options"]);
        let run = [
            &case["inputs"]["grads_per_step"],
            &case["outputs"]["params_after_step"],
            &case["outputs"]["state_after_step"],
        ];
        compared += check_run(name, &config, &case["inputs"]["params_initial"], run);
        checked += 1;
    }
    assert_eq!(checked, 13, "optimizers.json cases checked");
    // 5 steps x 2 parameters of 13 cases, plus per step and parameter the
    // state tensors: 1 in 5 SGD-with-momentum cases, 2 in 4 Adam cases,
    // 3 in 2 amsgrad cases.
    assert_eq!(compared, 10 * (13 + 5 + 4 * 2 + 2 * 3));
}

// tests/fixtures/end_to_end_cnn.json, case tiny_cnn_4x1x6x6: the two steps
// of SGD(lr 0.1, momentum 0.9) and of Adam(lr 1e-3) on the recorded
// gradients (sgd_run, adam_run), from params_initial.
#[test]
fn end_to_end_optimizer_steps_match_pytorch() {
    let case = common::case("end_to_end_cnn.json", "tiny_cnn_4x1x6x6");
    let mut compared = 0;
    for (kind, run) in [("sgd", &case["sgd_run"]), ("adam", &case["adam_run"])] {
        let config = config(kind, &case["options"][kind]);
        let steps = [&run["grads_per_step"], &run["params_after_step"], &run["state_after_step"]];
        compared += check_run(kind, &config, &case["inputs"]["params_initial"], steps);
    }
    // 2 steps x 4 parameters: params plus 1 (SGD) or 2 (Adam) state tensors.
    assert_eq!(compared, 8 * 2 + 8 * 3);
}
