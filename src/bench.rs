//! The standard workloads and how fast xent runs them: training images per
//! second, achieved GFLOP/s, inference latency and throughput, and the
//! machine's own ceiling measured in the same run.
//!
//! Data is random (seeded) of the right shape; every figure is taken in the
//! steady state after warm-up steps. FLOPs count the multiply-adds of conv and
//! linear layers (2 per multiply-add); a training step is counted as three
//! forward passes (forward, input gradient, weight gradient).

use std::time::Instant;

use serde::Serialize;

use crate::loss::{self, CrossEntropy};
use crate::nn::{Mode, ModelSpec, Sequential};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::Result;

/// One standard workload: a model, a batch size and an optimiser.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Short name, `W1` … `W3`.
    pub name: &'static str,
    /// What it is, for people.
    pub about: &'static str,
    /// The model in spec syntax.
    pub spec: &'static str,
    /// Training batch size.
    pub batch: usize,
    /// Optimiser used for training.
    pub optimizer: OptimizerKind,
    /// SGD momentum (0 for plain SGD or Adam).
    pub momentum: f64,
    /// Whether inference latency and throughput are measured.
    pub inference: bool,
}

/// Input of every workload: one 28×28 grey image, 10 classes.
pub const INPUT: [usize; 3] = [1, 28, 28];

/// The standard workloads, shared with the PyTorch twin in `bench/`.
pub const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "W1",
        about: "softmax regression Linear(784,10), batch 64, SGD",
        spec: "flatten-linear(10)",
        batch: 64,
        optimizer: OptimizerKind::Sgd,
        momentum: 0.0,
        inference: false,
    },
    Workload {
        name: "W2",
        about: "MLP 784-512-256-10, batch 128, Adam",
        spec: "flatten-linear(512)-relu-linear(256)-relu-linear(10)",
        batch: 128,
        optimizer: OptimizerKind::Adam,
        momentum: 0.0,
        inference: true,
    },
    Workload {
        name: "W3s",
        about: "2×(conv5 pad2, ReLU, maxpool2), Linear(1568,10), batch 128, SGD momentum",
        spec: "conv(16,5,pad=2)-relu-maxpool(2)-conv(32,5,pad=2)-relu-maxpool(2)\
               -flatten-linear(10)",
        batch: 128,
        optimizer: OptimizerKind::Sgd,
        momentum: 0.9,
        inference: true,
    },
    Workload {
        name: "W3",
        about: "conv3(32), conv3(64), maxpool2, Linear(9216,128), Linear(128,10), batch 64, \
                SGD momentum",
        spec: "conv(32,3)-relu-conv(64,3)-relu-maxpool(2)-flatten-linear(128)-relu-linear(10)",
        batch: 64,
        optimizer: OptimizerKind::Sgd,
        momentum: 0.9,
        inference: true,
    },
];

/// How long to measure.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Seconds of training steps to time per workload.
    pub train_seconds: f64,
    /// Batch-1 inference calls to time.
    pub latency_calls: usize,
    /// Seconds of batch-256 inference to time.
    pub infer_seconds: f64,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget { train_seconds: 2.0, latency_calls: 1000, infer_seconds: 1.0 }
    }
}

/// The figures of one workload at one thread count.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadResult {
    /// `W1` …
    pub workload: &'static str,
    /// Worker threads.
    pub threads: usize,
    /// Training throughput.
    pub train_images_per_second: f64,
    /// Achieved GFLOP/s of training.
    pub train_gflops: f64,
    /// Median batch-1 latency in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infer_b1_latency_ms: Option<f64>,
    /// Batch-256 inference throughput.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infer_b256_images_per_second: Option<f64>,
}

/// A seeded batch of random images in `[-1, 1)` and labels in `0..10`.
fn random_batch(n: usize, seed: u64) -> (Tensor, Vec<i64>) {
    let mut rng = Rng::new(seed, 0xbe4c);
    let mut x = Tensor::zeros(&[n, INPUT[0], INPUT[1], INPUT[2]]);
    x.data_mut().iter_mut().for_each(|v| *v = rng.uniform(-1.0, 1.0));
    let targets = (0..n).map(|_| rng.below(10) as i64).collect();
    (x, targets)
}

/// Builds a workload's network with seeded weights.
pub fn build(workload: &Workload) -> Result<Sequential> {
    ModelSpec::parse(workload.spec)?.build(&INPUT, 10, &mut Rng::new(0, 1))
}

/// One training step: forward, fused loss, backward, update.
pub fn train_step(
    net: &mut Sequential,
    optimizer: &mut dyn Optimizer,
    x: &Tensor,
    targets: &[i64],
    dlogits: &mut Tensor,
) -> Result<f64> {
    net.zero_grad();
    let logits = net.forward(x, Mode::Train)?;
    let loss =
        loss::cross_entropy_classes_into(logits, targets, &CrossEntropy::default(), dlogits)?;
    net.backward(dlogits);
    optimizer.step(&mut net.params_mut());
    Ok(loss)
}

/// Measures one workload on the current rayon pool.
///
/// # Errors
///
/// Only if the workload's spec or optimiser were invalid.
pub fn run_workload(workload: &Workload, budget: &Budget) -> Result<WorkloadResult> {
    let mut net = build(workload)?;
    let mut config = OptimizerConfig::new(workload.optimizer);
    config.lr = 1e-3;
    config.momentum = workload.momentum;
    let mut optimizer = config.build()?;
    let (x, targets) = random_batch(workload.batch, 0);
    let mut dlogits = Tensor::default();

    // Warm-up sizes every buffer and wakes the threads; then time whole steps.
    for _ in 0..3 {
        train_step(&mut net, optimizer.as_mut(), &x, &targets, &mut dlogits)?;
    }
    let started = Instant::now();
    let mut steps = 0;
    while steps < 5 || started.elapsed().as_secs_f64() < budget.train_seconds {
        train_step(&mut net, optimizer.as_mut(), &x, &targets, &mut dlogits)?;
        steps += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let images_per_second = (steps * workload.batch) as f64 / seconds;
    let flops_per_image = 3.0 * net.flops(1) as f64;

    let (latency, throughput) = if workload.inference {
        (Some(infer_latency_ms(&mut net, budget)?), Some(infer_throughput(&mut net, budget)?))
    } else {
        (None, None)
    };
    Ok(WorkloadResult {
        workload: workload.name,
        threads: rayon::current_num_threads(),
        train_images_per_second: images_per_second,
        train_gflops: images_per_second * flops_per_image / 1e9,
        infer_b1_latency_ms: latency,
        infer_b256_images_per_second: throughput,
    })
}

/// Median over `budget.latency_calls` of one batch-1 forward pass.
fn infer_latency_ms(net: &mut Sequential, budget: &Budget) -> Result<f64> {
    let (x, _) = random_batch(1, 1);
    for _ in 0..20 {
        net.forward(&x, Mode::Eval)?;
    }
    let mut times = Vec::with_capacity(budget.latency_calls);
    for _ in 0..budget.latency_calls.max(1) {
        let started = Instant::now();
        net.forward(&x, Mode::Eval)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Images per second of batch-256 forward passes.
fn infer_throughput(net: &mut Sequential, budget: &Budget) -> Result<f64> {
    let (x, _) = random_batch(256, 2);
    net.forward(&x, Mode::Eval)?;
    let started = Instant::now();
    let mut calls = 0;
    while calls < 3 || started.elapsed().as_secs_f64() < budget.infer_seconds {
        net.forward(&x, Mode::Eval)?;
        calls += 1;
    }
    Ok((calls * 256) as f64 / started.elapsed().as_secs_f64())
}

/// The machine's ceiling, measured on the current rayon pool.
#[derive(Clone, Debug, Serialize)]
pub struct Ceiling {
    /// Worker threads.
    pub threads: usize,
    /// Best GFLOP/s of our GEMM path on large square matrices.
    pub gemm_gflops: f64,
    /// GFLOP/s of a loop of independent fused multiply-adds on every thread.
    pub fma_peak_gflops: f64,
}

/// Measures [`Ceiling`].
pub fn ceiling() -> Ceiling {
    let threads = rayon::current_num_threads();
    Ceiling {
        threads,
        gemm_gflops: gemm_rate(),
        fma_peak_gflops: crate::kernels::fma_peak(threads),
    }
}

/// Best of several runs of a 1024³ product through [`crate::kernels::Gemm`].
fn gemm_rate() -> f64 {
    let n = 1024;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0.0; n * n];
    let gemm = crate::kernels::Gemm::new(n, n, n);
    let mut best = f64::MAX;
    for _ in 0..6 {
        let started = Instant::now();
        gemm.run_par(&a, &b, &mut c);
        best = best.min(started.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best / 1e9
}

/// Time and throughput of one layer in a training step.
#[derive(Clone, Debug, Serialize)]
pub struct LayerProfile {
    /// Position in the stack.
    pub index: usize,
    /// The layer in spec syntax.
    pub layer: String,
    /// Milliseconds per forward pass.
    pub forward_ms: f64,
    /// Milliseconds per backward pass.
    pub backward_ms: f64,
    /// GFLOP/s of forward and backward together (conv and linear only).
    pub gflops: f64,
}

/// Where a workload's training step spends its time.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    /// Each layer's forward and backward.
    pub layers: Vec<LayerProfile>,
    /// Milliseconds per whole step.
    pub step_ms: f64,
    /// Milliseconds per step outside the layers: zeroing the gradients, the
    /// loss and the optimiser step.
    pub outside_layers_ms: f64,
}

/// Per-layer times of a workload's training step, averaged over `steps`.
///
/// # Errors
///
/// As [`run_workload`].
pub fn profile(workload: &Workload, steps: usize) -> Result<Profile> {
    let mut net = build(workload)?;
    let mut config = OptimizerConfig::new(workload.optimizer);
    config.momentum = workload.momentum;
    let mut optimizer = config.build()?;
    let (x, targets) = random_batch(workload.batch, 0);
    let mut dlogits = Tensor::default();
    for _ in 0..3 {
        train_step(&mut net, optimizer.as_mut(), &x, &targets, &mut dlogits)?;
    }

    let steps = steps.max(1);
    net.start_profile();
    let started = Instant::now();
    for _ in 0..steps {
        train_step(&mut net, optimizer.as_mut(), &x, &targets, &mut dlogits)?;
    }
    let step_ms = started.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let times = net.take_profile();

    // FLOPs per layer: forward as counted, backward twice that.
    let mut shape = [&[workload.batch][..], &INPUT].concat();
    let mut rows = Vec::new();
    for (i, (layer, [forward, backward])) in net.layers().iter().zip(times).enumerate() {
        let flops = 3.0 * layer.flops(&shape) as f64;
        shape = layer.output_shape(&shape);
        let (forward, backward) = (forward / steps as f64, backward / steps as f64);
        rows.push(LayerProfile {
            index: i,
            layer: layer.spec(),
            forward_ms: forward * 1e3,
            backward_ms: backward * 1e3,
            gflops: flops / (forward + backward) / 1e9,
        });
    }
    let in_layers: f64 = rows.iter().map(|r| r.forward_ms + r.backward_ms).sum();
    Ok(Profile { layers: rows, step_ms, outside_layers_ms: step_ms - in_layers })
}
