//! Batch norm: every case of `batchnorm.json` against PyTorch, finite-difference
//! gradient checks, buffers in the model file, independence from the thread
//! count, and a small network with `bn` layers that trains.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{assert_close, cases, tensor};
use serde_json::Value;
use xent::bench::train_step;
use xent::data::Normalize;
use xent::io::{Model, ModelInfo};
use xent::nn::{BatchNorm, BatchNormConfig, Buffer, Layer, Mode, ModelSpec, Sequential};
use xent::optim::{OptimizerConfig, OptimizerKind};
use xent::rng::Rng;
use xent::{Error, Tensor};

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()).unwrap()
}

/// A layer with random weight and bias, and running statistics away from
/// their initial values.
fn random_layer(channels: usize, config: BatchNormConfig, rng: &mut Rng) -> BatchNorm {
    let mut layer = BatchNorm::new(channels, config);
    for p in layer.params_mut() {
        p.value = random(&[channels], rng);
    }
    for buffer in &mut layer.buffers_mut()[..2] {
        let Buffer::F32(value) = buffer else { panic!("running stats are f32") };
        value.data_mut().iter_mut().for_each(|v| *v = rng.uniform(0.5, 1.5));
    }
    layer
}

/// `y`, `dx` and the parameter gradients for `dy`, after one forward in `mode`.
fn forward_backward(
    layer: &mut BatchNorm,
    x: &Tensor,
    dy: &Tensor,
    mode: Mode,
) -> (Tensor, Tensor, Vec<Tensor>) {
    let mut y = Tensor::full(x.shape(), f32::NAN);
    layer.forward(x, &mut y, mode);
    let mut dx = Tensor::full(x.shape(), f32::NAN);
    layer.params_mut().iter_mut().for_each(|p| p.grad.fill(0.0));
    layer.backward(x, &y, dy, Some(&mut dx));
    (y, dx, layer.params().iter().map(|p| p.grad.clone()).collect())
}

// batchnorm.json: every case. BatchNorm2d from default and given running
// stats, without affine, eval mode; BatchNorm1d on (N, C) and (N, C, L), train
// and eval. Outputs, gradients, running stats after the step, batch
// statistics and the batch count. Outputs and gradients within atol 1e-6,
// rtol 1e-5 (they pass at ten times tighter), running stats 1e-7/1e-6, the
// f64 batch statistics 1e-12.
#[test]
fn batchnorm_matches_pytorch() {
    let all = cases("batchnorm.json");
    for case in &all {
        let name = case["name"].as_str().unwrap();
        let (opts, inputs) = (&case["options"], &case["inputs"]);
        let config = BatchNormConfig {
            eps: opts["eps"].as_f64().unwrap(),
            momentum: opts["momentum"].as_f64().unwrap(),
            affine: opts["affine"].as_bool().unwrap(),
        };
        assert_eq!(opts["track_running_stats"], true, "{name}");
        let channels = opts["num_features"].as_u64().unwrap() as usize;
        let mut layer = BatchNorm::new(channels, config);
        for (param, pname) in layer.params_mut().iter_mut().zip(["weight", "bias"]) {
            param.value = tensor(&inputs[pname]).tensor();
        }
        for (buffer, bname) in layer.buffers_mut().iter_mut().zip(["running_mean", "running_var"]) {
            *buffer = Buffer::F32(tensor(&inputs[bname]).tensor());
        }

        let mode = if opts["training"] == true { Mode::Train } else { Mode::Eval };
        let x = tensor(&inputs["x"]).tensor();
        let dy = tensor(&case["grad_outputs"]["output"]).tensor();
        let (y, dx, dparams) = forward_backward(&mut layer, &x, &dy, mode);
        let want = |key: &str, what: &str| tensor(&case[key][what]).data;
        assert_close(&format!("{name} output"), y.data(), &want("outputs", "output"), 1e-6, 1e-5);
        assert_close(&format!("{name} dx"), dx.data(), &want("grads", "x"), 1e-6, 1e-5);
        for (dparam, pname) in dparams.iter().zip(["weight", "bias"]) {
            let what = format!("{name} d{pname}");
            assert_close(&what, dparam.data(), &want("grads", pname), 1e-6, 1e-5);
        }
        assert_eq!(dparams.len(), if config.affine { 2 } else { 0 }, "{name}");
        check_running_and_batch_stats(name, &layer, case);
    }
    assert_eq!(all.len(), 7);
}

/// Running stats and batch count after the step; batch statistics (f64) for
/// training cases.
fn check_running_and_batch_stats(name: &str, layer: &BatchNorm, case: &Value) {
    let outputs = &case["outputs"];
    let mean_after = tensor(&outputs["running_mean_after"]).data;
    assert_close(
        &format!("{name} running_mean"),
        layer.running_mean().data(),
        &mean_after,
        1e-7,
        1e-6,
    );
    let var_after = tensor(&outputs["running_var_after"]).data;
    assert_close(
        &format!("{name} running_var"),
        layer.running_var().data(),
        &var_after,
        1e-7,
        1e-6,
    );
    let tracked = tensor(&outputs["num_batches_tracked_after"]).i64();
    assert_eq!(layer.num_batches_tracked(), tracked[0], "{name} num_batches_tracked");

    let Some((mean, var)) = layer.batch_stats() else {
        assert!(outputs.get("batch_mean").is_none(), "{name}: no batch statistics kept");
        return;
    };
    let close = |what: &str, got: &[f64], key: &str| {
        let want = tensor(&outputs[key]).data;
        assert_eq!(got.len(), want.len(), "{name} {what}");
        for (c, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-12 + 1e-12 * w.abs(), "{name} {what}[{c}]: {g} vs {w}");
        }
    };
    close("batch mean", &mean, "batch_mean");
    close("batch var", &var, "batch_var_biased");
    let x = tensor(&case["inputs"]["x"]);
    let count = (x.data.len() / layer.channels()) as f64;
    let unbiased: Vec<f64> = var.iter().map(|v| v * count / (count - 1.0)).collect();
    close("unbiased batch var", &unbiased, "batch_var_unbiased");
}

/// `L = Σ r ⊙ layer(x)` in f64, the layer in `mode`.
fn objective(layer: &mut BatchNorm, x: &Tensor, r: &Tensor, mode: Mode) -> f64 {
    let mut y = Tensor::zeros(x.shape());
    layer.forward(x, &mut y, mode);
    y.data().iter().zip(r.data()).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum()
}

fn rel_err(analytic: &[f32], numeric: &[f64]) -> f64 {
    let diff: f64 = analytic.iter().zip(numeric).map(|(&a, &n)| (f64::from(a) - n).powi(2)).sum();
    let scale = analytic.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
    let scale = scale.max(numeric.iter().map(|n| n * n).sum::<f64>().sqrt()).max(1e-6);
    diff.sqrt() / scale
}

/// Central differences `(L(θ + h) − L(θ − h)) / 2h`, h = 1e-3 in f32, of dx and
/// every parameter gradient; relative error below 1e-2.
fn gradcheck(name: &str, layer: &mut BatchNorm, x: &Tensor, mode: Mode, rng: &mut Rng) {
    const H: f32 = 1e-3;
    let r = random(x.shape(), rng);
    let (_, dx, dparams) = forward_backward(layer, x, &r, mode);

    let mut numeric = Vec::new();
    let mut xp = x.clone();
    for i in 0..x.numel() {
        xp.data_mut()[i] = x.data()[i] + H;
        let plus = objective(layer, &xp, &r, mode);
        xp.data_mut()[i] = x.data()[i] - H;
        let minus = objective(layer, &xp, &r, mode);
        xp.data_mut()[i] = x.data()[i];
        numeric.push((plus - minus) / (2.0 * f64::from(H)));
    }
    let err = rel_err(dx.data(), &numeric);
    assert!(err < 1e-2, "{name}: dx relative error {err:.2e}");

    for (p, analytic) in dparams.iter().enumerate() {
        let mut numeric = Vec::new();
        for i in 0..analytic.numel() {
            let original = layer.params()[p].value.data()[i];
            layer.params_mut()[p].value.data_mut()[i] = original + H;
            let plus = objective(layer, x, &r, mode);
            layer.params_mut()[p].value.data_mut()[i] = original - H;
            let minus = objective(layer, x, &r, mode);
            layer.params_mut()[p].value.data_mut()[i] = original;
            numeric.push((plus - minus) / (2.0 * f64::from(H)));
        }
        let err = rel_err(analytic.data(), &numeric);
        assert!(err < 1e-2, "{name}: d{} relative error {err:.2e}", layer.param_names()[p]);
    }
}

#[test]
fn batchnorm_gradients() {
    let mut rng = Rng::new(5, 0);
    // Not two values per channel: they normalise to ±1 whatever x is, so the
    // gradient is of the order of eps and below the f32 differences' noise.
    let shapes: [&[usize]; 6] =
        [&[2, 3, 5, 5], &[3, 2, 3, 4], &[3, 4, 1, 1], &[4, 5], &[3, 3], &[3, 2, 5]];
    for shape in shapes {
        for (affine, mode) in [(true, Mode::Train), (false, Mode::Train), (true, Mode::Eval)] {
            let config = BatchNormConfig { affine, ..BatchNormConfig::default() };
            let mut layer = random_layer(shape[1], config, &mut rng);
            let x = random(shape, &mut rng);
            let name = format!("{shape:?} affine {affine} {mode:?}");
            gradcheck(&name, &mut layer, &x, mode, &mut rng);
        }
    }
}

/// Forward and backward of one fresh layer on `pool`: y, dx, parameter
/// gradients and running statistics, as bits.
fn run_on_threads(threads: usize, shape: &[usize]) -> Vec<Vec<u32>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut rng = Rng::new(6, 0);
        let mut layer = random_layer(shape[1], BatchNormConfig::default(), &mut rng);
        let x = random(shape, &mut rng);
        let dy = random(shape, &mut rng);
        let (y, dx, dparams) = forward_backward(&mut layer, &x, &dy, Mode::Train);
        let mut all = vec![y, dx, layer.running_mean().clone(), layer.running_var().clone()];
        all.extend(dparams);
        all.iter().map(|t| t.data().iter().map(|v| v.to_bits()).collect()).collect()
    })
}

// Per-channel sums are one thread's each, in a fixed order; tensors large
// enough to take the parallel paths.
#[test]
fn batchnorm_is_bit_identical_across_thread_counts() {
    for shape in [&[8, 16, 12, 12][..], &[64, 512], &[5, 3, 40, 40]] {
        let one = run_on_threads(1, shape);
        assert_eq!(one, run_on_threads(2, shape), "{shape:?}: 1 vs 2 threads");
        assert_eq!(one, run_on_threads(3, shape), "{shape:?}: 1 vs 3 threads");
    }
}

const SPEC: &str = "conv(8,3,pad=1)-bn-relu-maxpool(2)-flatten-linear(16)-bn-relu-linear";

fn build(seed: u64) -> Sequential {
    ModelSpec::parse(SPEC).unwrap().build(&[1, 28, 28], 10, &mut Rng::new(seed, 0)).unwrap()
}

fn batch(n: usize, seed: u64) -> (Tensor, Vec<i64>) {
    let mut rng = Rng::new(seed, 1);
    let x = random(&[n, 1, 28, 28], &mut rng);
    (x, (0..n).map(|_| rng.below(10) as i64).collect())
}

// The spec of the issue on MNIST-shaped input: it builds, the optimizer gets
// the parameters only, and a few Adam steps lower the loss on a fixed batch.
#[test]
fn spec_with_bn_trains() {
    let mut net = build(0);
    assert_eq!(net.output_shape(), vec![10]);
    let conv = 8 * 9 + 8;
    let linear = 8 * 14 * 14 * 16 + 16 + 16 * 10 + 10;
    assert_eq!(net.param_count(), conv + 2 * 8 + linear + 2 * 16);

    let mut config = OptimizerConfig::new(OptimizerKind::Adam);
    config.lr = 1e-2;
    let mut optimizer = config.build().unwrap();
    let (x, targets) = batch(16, 0);
    let mut dlogits = Tensor::default();
    let mut losses = Vec::new();
    for _ in 0..10 {
        losses.push(train_step(&mut net, optimizer.as_mut(), &x, &targets, &mut dlogits).unwrap());
    }
    assert!(losses[9] < 0.5 * losses[0], "losses {losses:?}");
    let tracked: Vec<&Buffer> = net
        .named_buffers()
        .into_iter()
        .filter(|(n, _)| n.ends_with("tracked"))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(tracked, [&Buffer::I64(10), &Buffer::I64(10)]);
}

// A batch of one image trains a BatchNorm1d on one value per feature, which
// PyTorch refuses; so does xent, naming the layer. Evaluation takes it.
#[test]
fn one_image_batch_is_refused_in_training_only() {
    let mut net = build(0);
    let (x, _) = batch(1, 0);
    let err = net.forward(&x, Mode::Train).expect_err("batch of one in training");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("layer 7 (`bn`)") && message.contains("[1, 16]"), "{message}");
    assert!(net.forward(&x, Mode::Eval).is_ok());
    let (x, _) = batch(2, 0);
    assert!(net.forward(&x, Mode::Train).is_ok());
}

// Buffers go into the model file under PyTorch's names (num_batches_tracked as
// a scalar i64) and come back exactly; eval outputs are identical after reload.
#[test]
fn model_file_keeps_buffers() {
    let mut net = build(1);
    let mut optimizer = OptimizerConfig::new(OptimizerKind::Sgd).build().unwrap();
    let (x, targets) = batch(8, 1);
    let mut dlogits = Tensor::default();
    for _ in 0..3 {
        train_step(&mut net, optimizer.as_mut(), &x, &targets, &mut dlogits).unwrap();
    }
    let info = ModelInfo {
        spec: net.spec(),
        input_shape: vec![1, 28, 28],
        classes: (0..10).map(|c| c.to_string()).collect(),
        pixel_max: 255.0,
        normalize: Normalize::identity(1),
        dataset: "random".into(),
        import: Default::default(),
        training: serde_json::Value::Null,
    };
    let mut model = Model { net, info };
    let want = model.net.forward(&x, Mode::Eval).unwrap().clone();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model.save(&path).unwrap();

    // The raw file: names, dtypes and shapes as PyTorch's state_dict.
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for layer in [1, 6] {
        let mean = file.tensor(&format!("{layer}.running_mean")).unwrap();
        assert_eq!(mean.dtype(), safetensors::Dtype::F32);
        let tracked = file.tensor(&format!("{layer}.num_batches_tracked")).unwrap();
        assert_eq!(tracked.dtype(), safetensors::Dtype::I64);
        assert_eq!(tracked.shape(), &[] as &[usize]);
        assert_eq!(tracked.data(), 3i64.to_le_bytes());
        assert!(file.tensor(&format!("{layer}.weight")).is_ok());
    }
    assert_eq!(file.len(), 10 + 6, "10 parameters and 6 buffers");

    let mut loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.net.named_buffers(), model.net.named_buffers());
    let (a, b) = (loaded.net.named_params(), model.net.named_params());
    assert!(a.iter().zip(&b).all(|((na, pa), (nb, pb))| na == nb && pa.value == pb.value));
    let got = loaded.net.forward(&x, Mode::Eval).unwrap();
    assert_eq!(got.data(), want.data());
}

// A model file whose count is not an i64 scalar is refused, naming the tensor.
#[test]
fn model_file_with_a_float_count_is_refused() {
    let net = build(2);
    let names: Vec<String> = net.named_buffers().into_iter().map(|(n, _)| n).collect();
    let info = ModelInfo {
        spec: net.spec(),
        input_shape: vec![1, 28, 28],
        classes: (0..10).map(|c| c.to_string()).collect(),
        pixel_max: 255.0,
        normalize: Normalize::identity(1),
        dataset: "random".into(),
        import: Default::default(),
        training: serde_json::Value::Null,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    Model { net, info }.save(&path).unwrap();

    // Rewrite the file with 1.num_batches_tracked as an f32 scalar.
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let zero = 0f32.to_le_bytes();
    let mut views = Vec::new();
    for (name, view) in file.tensors() {
        let view = if name == "1.num_batches_tracked" {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![], &zero).unwrap()
        } else {
            view
        };
        views.push((name, view));
    }
    let rewritten = safetensors::serialize(views, header.metadata().clone()).unwrap();
    std::fs::write(&path, rewritten).unwrap();
    assert!(names.contains(&"1.num_batches_tracked".to_string()));

    let message = Model::load(&path).expect_err("float count").to_string();
    assert!(message.contains("1.num_batches_tracked: expected i64"), "{message}");
}

/// Counts allocations made on threads marked `TRACKED`.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static TRACKED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) && TRACKED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) && TRACKED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// Training steps of a fixed batch shape through `bn` layers allocate nothing
// once the first steps sized the buffers.
#[test]
fn steady_state_step_with_bn_does_not_allocate() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .start_handler(|_| {
            // Work stealing registers a thread with crossbeam-epoch the first
            // time it steals: a one-time allocation, which a thread slowed
            // by the machine's load may only make in the counted steps. Made
            // here, the count sees only the training steps' own.
            drop(crossbeam_epoch::pin());
            TRACKED.with(|t| t.set(true))
        })
        .build()
        .unwrap();
    pool.install(|| {
        let mut net = build(3);
        let mut optimizer = OptimizerConfig::new(OptimizerKind::Adam).build().unwrap();
        let (x, targets) = batch(32, 3);
        let mut dlogits = Tensor::default();
        for _ in 0..3 {
            train_step(&mut net, optimizer.as_mut(), &x, &targets, &mut dlogits).unwrap();
        }
        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            train_step(&mut net, optimizer.as_mut(), &x, &targets, &mut dlogits).unwrap();
        }
        COUNTING.store(false, Ordering::SeqCst);
    });
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst), 0, "allocations in steady-state steps");
}

/// Each epoch's steps and the images its last step reached, as the trainer
/// reports them.
#[derive(Default)]
struct EpochEnds(Vec<(usize, usize)>);

impl xent::train::Observer for EpochEnds {
    fn on_step(&mut self, s: &xent::train::StepReport) {
        if s.step == s.steps {
            self.0.push((s.steps, s.images));
        }
    }
}

/// Trains `model` for 2 epochs on 7 digits in batches of 3; returns how
/// each epoch ended.
fn seven_in_threes(model: &str) -> EpochEnds {
    use xent::optim::{OptimizerConfig, OptimizerKind};
    use xent::train::{self, TrainConfig};

    let split = xent::data::load("digits").unwrap();
    let small = xent::data::Split { train: split.train.take(7), test: split.test.take(8) };
    let config = TrainConfig {
        dataset: "digits".into(),
        import: Default::default(),
        model: model.into(),
        epochs: 2,
        batch_size: 3,
        optimizer: OptimizerConfig::new(OptimizerKind::Adam),
        schedule: "constant".into(),
        label_smoothing: 0.0,
        seed: 0,
        threads: 1,
        augment: xent::data::Augment::NONE,
        normalize: None,
        prefetch: true,
    };
    let mut ends = EpochEnds::default();
    let trained = train::train(&small, &config, None, &mut ends).unwrap();
    assert_eq!(trained.history.len(), 2);
    ends
}

// Seven images in batches of 3 leave one sample over: a batch of one would
// have no batch statistics, so the trainer leaves it out of that epoch.
#[test]
fn training_skips_a_last_batch_of_one() {
    let ends = seven_in_threes("flatten-linear(8)-bn-relu-linear");
    assert_eq!(ends.0, [(2, 6), (2, 6)], "two batches of 3 per epoch");
}

// Without batch norm a batch of one trains like any other, as PyTorch's
// DataLoader gives it: every sample, every epoch.
#[test]
fn training_without_batch_norm_uses_every_sample() {
    let ends = seven_in_threes("flatten-linear(8)-relu-linear");
    assert_eq!(ends.0, [(3, 7), (3, 7)], "batches of 3, 3 and 1 per epoch");
}
