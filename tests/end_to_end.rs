//! A whole training step against PyTorch: `end_to_end_cnn.json`, case
//! `tiny_cnn_4x1x6x6` — conv(1→4, 3×3, pad 1) → ReLU → MaxPool2d(2) → flatten →
//! Linear(36→3) → cross-entropy, its intermediates, every gradient, and two
//! steps of SGD (momentum 0.9) and of Adam from the same start, each step
//! recomputing the gradients through the network.

mod common;

use common::{assert_close, case, tensor};
use serde_json::Value;
use xent::loss::{self, CrossEntropy};
use xent::nn::{Mode, ModelSpec, Sequential};
use xent::optim::{OptimizerConfig, OptimizerKind};
use xent::rng::Rng;
use xent::Tensor;

/// Fixture parameter names and their `state_dict` names in our stack.
const NAMES: [(&str, &str); 4] = [
    ("conv.weight", "0.weight"),
    ("conv.bias", "0.bias"),
    ("fc.weight", "4.weight"),
    ("fc.bias", "4.bias"),
];

// Forward/backward: intermediates atol 1e-5 rtol 1e-4 (conv and matmul
// summation order differ), gradients atol 1e-4 rtol 1e-3.
const FWD: (f64, f64) = (1e-5, 1e-4);
const GRAD: (f64, f64) = (1e-4, 1e-3);

fn network(fixture: &Value) -> Sequential {
    let spec = ModelSpec::parse("conv(4,3,pad=1)-relu-maxpool(2)-flatten-linear(3)").unwrap();
    let mut net = spec.build(&[1, 6, 6], 3, &mut Rng::new(0, 0)).unwrap();
    let initial = &fixture["inputs"]["params_initial"];
    for (name, param) in net.named_params_mut() {
        let (theirs, _) = NAMES.iter().find(|(_, ours)| *ours == name).expect("a fixture name");
        param.value = tensor(&initial[*theirs]).tensor();
    }
    net
}

/// Forward, loss and backward; returns the loss and leaves gradients in `net`.
fn step(net: &mut Sequential, images: &Tensor, labels: &[i64]) -> (f64, Tensor) {
    net.zero_grad();
    let logits = net.forward(images, Mode::Train).unwrap().clone();
    let mut dlogits = Tensor::default();
    let loss =
        loss::cross_entropy_classes_into(&logits, labels, &CrossEntropy::default(), &mut dlogits)
            .unwrap();
    net.backward(&dlogits);
    (loss, dlogits)
}

#[test]
fn forward_and_backward_match_pytorch() {
    // Unfused, every intermediate is kept and checked; fused (the default),
    // the conv's output before its ReLU and the ReLU's output gradient are
    // not kept, and everything else must agree just the same.
    for fused in [false, true] {
        let fixture = case("end_to_end_cnn.json", "tiny_cnn_4x1x6x6");
        let mut net = network(&fixture);
        net.set_fusion(fused);
        let images = tensor(&fixture["inputs"]["images"]).tensor();
        let labels = tensor(&fixture["inputs"]["labels"]).i64();
        let (loss, dlogits) = step(&mut net, &images, &labels);

        // Intermediates: conv, relu, pool, flat, logits, then probabilities and loss.
        let forward = &fixture["outputs"]["forward"];
        for (i, key) in ["conv_out", "relu_out", "pool_out", "flat", "logits"].iter().enumerate() {
            if fused && *key == "conv_out" {
                continue;
            }
            let want = &tensor(&forward[*key]).data;
            assert_close(key, net.activation(i).data(), want, FWD.0, FWD.1);
        }
        let probs = loss::softmax(net.output(), 1).unwrap();
        let want = &tensor(&forward["probabilities"]).data;
        assert_close("probabilities", probs.data(), want, FWD.0, FWD.1);
        assert_close("loss", &[loss as f32], &tensor(&forward["loss"]).data, FWD.0, FWD.1);

        // Gradients of every parameter and every activation.
        for (theirs, ours) in NAMES {
            let named = net.named_params().into_iter().find(|(n, _)| n == ours);
            let got = named.unwrap().1.grad.clone();
            let want = &tensor(&fixture["grads"][theirs]).data;
            assert_close(theirs, got.data(), want, GRAD.0, GRAD.1);
        }
        let activation_grads = &fixture["activation_grads"];
        let want = &tensor(&activation_grads["logits"]).data;
        assert_close("dlogits", dlogits.data(), want, GRAD.0, GRAD.1);
        for (i, key) in ["conv_out", "relu_out", "pool_out", "flat"].iter().enumerate() {
            if fused && *key == "relu_out" {
                continue;
            }
            let want = tensor(&activation_grads[*key]).data;
            let got = net.activation_grad(i).data();
            assert_close(&format!("d{key} (fused: {fused})"), got, &want, GRAD.0, GRAD.1);
        }
    }
}

/// Two optimiser steps through the whole network; parameters after each step
/// within atol 1e-5 rtol 1e-4, losses along the way as forward values.
fn check_run(kind: OptimizerKind, run_key: &str, settings: &Value) {
    let fixture = case("end_to_end_cnn.json", "tiny_cnn_4x1x6x6");
    let run = &fixture[run_key];
    let mut net = network(&fixture);
    let images = tensor(&fixture["inputs"]["images"]).tensor();
    let labels = tensor(&fixture["inputs"]["labels"]).i64();

    let mut config = OptimizerConfig::new(kind);
    config.lr = settings["lr"].as_f64().unwrap();
    if kind == OptimizerKind::Sgd {
        config.momentum = settings["momentum"].as_f64().unwrap();
    }
    let mut optimizer = config.build().unwrap();

    let losses = tensor(&run["loss_at_params"]).data;
    let after = run["params_after_step"].as_array().unwrap();
    for (t, want_params) in after.iter().enumerate() {
        let (loss, _) = step(&mut net, &images, &labels);
        assert_close(
            &format!("{run_key} loss before step {}", t + 1),
            &[loss as f32],
            &losses[t..t + 1],
            FWD.0,
            FWD.1,
        );
        optimizer.step(&mut net.params_mut());
        for (theirs, ours) in NAMES {
            let got =
                net.named_params().into_iter().find(|(n, _)| n == ours).unwrap().1.value.clone();
            let what = format!("{run_key} {theirs} after step {}", t + 1);
            assert_close(&what, got.data(), &tensor(&want_params[theirs]).data, 1e-5, 1e-4);
        }
    }
    let (final_loss, _) = step(&mut net, &images, &labels);
    assert_close(
        &format!("{run_key} final loss"),
        &[final_loss as f32],
        &losses[after.len()..],
        FWD.0,
        FWD.1,
    );
}

#[test]
fn two_sgd_momentum_steps_match_pytorch() {
    let fixture = case("end_to_end_cnn.json", "tiny_cnn_4x1x6x6");
    check_run(OptimizerKind::Sgd, "sgd_run", &fixture["options"]["sgd"]);
}

#[test]
fn two_adam_steps_match_pytorch() {
    let fixture = case("end_to_end_cnn.json", "tiny_cnn_4x1x6x6");
    check_run(OptimizerKind::Adam, "adam_run", &fixture["options"]["adam"]);
}
