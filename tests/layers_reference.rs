//! Layers against PyTorch: every case of `linear.json`, `conv2d.json`, the
//! max-pool cases of `pooling.json` and ReLU of `activations.json`, forward and
//! backward. Fixtures come from `tests/fixtures` (see its README).

mod common;

use common::{assert_close, cases, tensor};
use serde_json::Value;
use xent::nn::{Conv2d, Conv2dConfig, Layer, Linear, MaxPool2d, Mode, Relu};
use xent::rng::Rng;
use xent::Tensor;

/// Output, input gradient and parameter gradients of one layer for the
/// objective `L = sum(dy * y)`.
struct Run {
    y: Tensor,
    dx: Tensor,
    dparams: Vec<Tensor>,
}

fn run(layer: &mut dyn Layer, x: &Tensor, dy: &Tensor) -> Run {
    let mut y = Tensor::zeros(&layer.output_shape(x.shape()));
    layer.forward(x, &mut y, Mode::Train);
    let mut dx = Tensor::full(x.shape(), f32::NAN);
    layer.backward(x, &y, dy, Some(&mut dx));
    let dparams = layer.params().iter().map(|p| p.grad.clone()).collect();
    Run { y, dx, dparams }
}

fn pair(v: &Value) -> [usize; 2] {
    let a = v.as_array().expect("[h, w] option");
    [a[0].as_u64().unwrap() as usize, a[1].as_u64().unwrap() as usize]
}

fn set_params(layer: &mut dyn Layer, inputs: &Value, names: &[&str]) {
    for (param, name) in layer.params_mut().iter_mut().zip(names) {
        let want = tensor(&inputs[*name]).tensor();
        assert_eq!(param.value.shape(), want.shape(), "{name} shape");
        param.value = want;
    }
}

fn check(name: &str, got: &Run, case: &Value, params: &[&str], atol: f64, rtol: f64) {
    assert_close(
        &format!("{name} output"),
        got.y.data(),
        &tensor(&case["outputs"]["output"]).data,
        atol,
        rtol,
    );
    assert_close(
        &format!("{name} dx"),
        got.dx.data(),
        &tensor(&case["grads"]["x"]).data,
        atol,
        rtol,
    );
    for (dparam, pname) in got.dparams.iter().zip(params) {
        let want = tensor(&case["grads"][*pname]).data;
        assert_close(&format!("{name} d{pname}"), dparam.data(), &want, atol, rtol);
    }
}

// linear.json: every case. Leading batch dimensions are folded into one, as
// PyTorch's F.linear treats them.
#[test]
fn linear_matches_pytorch() {
    let all = cases("linear.json");
    for case in &all {
        let name = case["name"].as_str().unwrap();
        let opts = &case["options"];
        let (fan_in, fan_out) = (
            opts["in_features"].as_u64().unwrap() as usize,
            opts["out_features"].as_u64().unwrap() as usize,
        );
        let has_bias = opts["bias"].as_bool().unwrap();
        let mut layer = Linear::new(fan_in, fan_out, has_bias, &mut Rng::new(0, 0));
        set_params(&mut layer, &case["inputs"], &["weight", "bias"]);

        let mut x = tensor(&case["inputs"]["x"]).tensor();
        let mut dy = tensor(&case["grad_outputs"]["output"]).tensor();
        x.reshape(&[x.numel() / fan_in, fan_in]).unwrap();
        dy.reshape(&[dy.numel() / fan_out, fan_out]).unwrap();
        let got = run(&mut layer, &x, &dy);
        check(name, &got, case, &["weight", "bias"], 1e-5, 1e-4);
    }
    assert_eq!(all.len(), 5);
}

// conv2d.json: every case (kernels 1/3/5/3x2, stride, padding, groups,
// depthwise, with and without bias).
#[test]
fn conv2d_matches_pytorch() {
    let all = cases("conv2d.json");
    for case in &all {
        let name = case["name"].as_str().unwrap();
        let opts = &case["options"];
        let config = Conv2dConfig {
            in_channels: opts["in_channels"].as_u64().unwrap() as usize,
            out_channels: opts["out_channels"].as_u64().unwrap() as usize,
            kernel: pair(&opts["kernel_size"]),
            stride: pair(&opts["stride"]),
            padding: pair(&opts["padding"]),
            groups: opts["groups"].as_u64().unwrap() as usize,
            bias: opts["bias"].as_bool().unwrap(),
        };
        assert_eq!(pair(&opts["dilation"]), [1, 1], "{name}: dilation is not supported");

        // Both algorithms: direct (stride 1, where the CPU has AVX2) and unfolded.
        for unfold_only in [false, true] {
            let mut layer = Conv2d::new(config, &mut Rng::new(0, 0));
            layer.set_unfold_only(unfold_only);
            set_params(&mut layer, &case["inputs"], &["weight", "bias"]);
            let x = tensor(&case["inputs"]["x"]).tensor();
            let dy = tensor(&case["grad_outputs"]["output"]).tensor();
            let got = run(&mut layer, &x, &dy);
            let what = format!("{name} (unfold only: {unfold_only})");
            check(&what, &got, case, &["weight", "bias"], 1e-5, 1e-4);
        }
    }
    assert_eq!(all.len(), 13);
}

// pooling.json: the max-pool cases (k2 s2, odd sizes, k3 s2 p1, all-negative
// windows with padding, ties), values, indices and gradients.
#[test]
fn maxpool_matches_pytorch() {
    let maxpool: Vec<Value> = cases("pooling.json")
        .into_iter()
        .filter(|c| c["op"].as_str().unwrap().contains("max_pool"))
        .collect();
    for case in &maxpool {
        let name = case["name"].as_str().unwrap();
        let opts = &case["options"];
        assert_eq!(opts["ceil_mode"], false, "{name}");
        let mut layer = MaxPool2d::new(
            pair(&opts["kernel_size"]),
            pair(&opts["stride"]),
            pair(&opts["padding"]),
        );
        let x = tensor(&case["inputs"]["x"]).tensor();
        let dy = tensor(&case["grad_outputs"]["output"]).tensor();
        let got = run(&mut layer, &x, &dy);
        check(name, &got, case, &[], 1e-6, 1e-5);
    }
    assert_eq!(maxpool.len(), 7);
}

// activations.json, case relu: float64 reference and PyTorch's float32 results.
#[test]
fn relu_matches_pytorch() {
    let case = common::case("activations.json", "relu");
    let x = tensor(&case["inputs"]["x"]).tensor();
    let dy = tensor(&case["grad_outputs"]["output"]).tensor();
    let got = run(&mut Relu, &x, &dy);
    check("relu", &got, &case, &[], 1e-6, 1e-5);
    assert_close("relu f32", got.y.data(), &tensor(&case["outputs_f32"]["output"]).data, 0.0, 0.0);
    assert_close("relu f32 dx", got.dx.data(), &tensor(&case["grads_f32"]["x"]).data, 0.0, 0.0);
}

// One image is computed by splitting its output channels over threads, a
// batch by splitting images; both must give the same numbers.
#[test]
fn conv2d_single_image_matches_the_batched_path() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    pool.install(|| {
        let config = Conv2dConfig {
            in_channels: 3,
            out_channels: 20,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            groups: 1,
            bias: true,
        };
        let mut layer = Conv2d::new(config, &mut Rng::new(3, 0));
        let mut rng = Rng::new(4, 0);
        let batch: Vec<f32> = (0..2 * 3 * 9 * 11).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let x2 = Tensor::from_vec(&[2, 3, 9, 11], batch.clone()).unwrap();
        let x1 = Tensor::from_vec(&[1, 3, 9, 11], batch[..3 * 9 * 11].to_vec()).unwrap();

        let mut y2 = Tensor::zeros(&layer.output_shape(x2.shape()));
        layer.forward(&x2, &mut y2, Mode::Eval);
        let mut y1 = Tensor::zeros(&layer.output_shape(x1.shape()));
        layer.forward(&x1, &mut y1, Mode::Eval);
        assert_eq!(y1.data(), &y2.data()[..y1.numel()]);
    });
}
