//! Finite-difference checks of every layer's backward pass on tiny shapes
//! (n = 2, c = 3, 5×5 and odd sizes), with stride and padding. The objective is
//! `L = Σ r ⊙ y` for a fixed random `r`; each analytic gradient is compared with
//! the central difference `(L(θ + h) − L(θ − h)) / 2h`, h = 1e-3, in f32.

use xent::nn::{Conv2d, Conv2dConfig, Flatten, Layer, Linear, MaxPool2d, Mode, Relu};
use xent::rng::Rng;
use xent::Tensor;

const H: f32 = 1e-3;
const MAX_REL_ERR: f64 = 1e-2;

/// Values spaced at least 0.01 apart and away from 0, in random order, so
/// neither a ReLU kink nor a max-pool tie lies within h of any input.
fn spaced(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let mut values: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0 + 0.5) * 0.05).collect();
    rng.shuffle(&mut values);
    Tensor::from_vec(shape, values).unwrap()
}

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()).unwrap()
}

/// `L = Σ r ⊙ layer(x)` in f64.
fn objective(layer: &mut dyn Layer, x: &Tensor, r: &Tensor) -> f64 {
    let mut y = Tensor::zeros(&layer.output_shape(x.shape()));
    layer.forward(x, &mut y, Mode::Train);
    y.data().iter().zip(r.data()).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum()
}

fn rel_err(analytic: &[f32], numeric: &[f64]) -> f64 {
    let diff: f64 = analytic.iter().zip(numeric).map(|(&a, &n)| (f64::from(a) - n).powi(2)).sum();
    let scale = analytic.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>().sqrt();
    let scale = scale.max(numeric.iter().map(|n| n * n).sum::<f64>().sqrt()).max(1e-6);
    diff.sqrt() / scale
}

/// Checks dx and every parameter gradient of `layer` at input `x`.
fn gradcheck(name: &str, layer: &mut dyn Layer, x: &Tensor, rng: &mut Rng) {
    let r = random(&layer.output_shape(x.shape()), rng);

    // Analytic gradients for L = Σ r ⊙ y: dy = r.
    let mut y = Tensor::zeros(&layer.output_shape(x.shape()));
    layer.forward(x, &mut y, Mode::Train);
    let mut dx = Tensor::zeros(x.shape());
    layer.params_mut().iter_mut().for_each(|p| p.grad.fill(0.0));
    layer.backward(x, &y, &r, Some(&mut dx));
    let dparams: Vec<Tensor> = layer.params().iter().map(|p| p.grad.clone()).collect();

    // Central differences over every input element.
    let mut numeric = Vec::new();
    let mut xp = x.clone();
    for i in 0..x.numel() {
        xp.data_mut()[i] = x.data()[i] + H;
        let plus = objective(layer, &xp, &r);
        xp.data_mut()[i] = x.data()[i] - H;
        let minus = objective(layer, &xp, &r);
        xp.data_mut()[i] = x.data()[i];
        numeric.push((plus - minus) / (2.0 * f64::from(H)));
    }
    let err = rel_err(dx.data(), &numeric);
    assert!(err < MAX_REL_ERR, "{name}: dx relative error {err:.2e}");

    // And over every parameter element.
    for (p, analytic) in dparams.iter().enumerate() {
        let mut numeric = Vec::new();
        for i in 0..analytic.numel() {
            let original = layer.params()[p].value.data()[i];
            layer.params_mut()[p].value.data_mut()[i] = original + H;
            let plus = objective(layer, x, &r);
            layer.params_mut()[p].value.data_mut()[i] = original - H;
            let minus = objective(layer, x, &r);
            layer.params_mut()[p].value.data_mut()[i] = original;
            numeric.push((plus - minus) / (2.0 * f64::from(H)));
        }
        let err = rel_err(analytic.data(), &numeric);
        let pname = layer.param_names()[p];
        assert!(err < MAX_REL_ERR, "{name}: d{pname} relative error {err:.2e}");
    }
}

#[test]
fn linear_gradients() {
    let mut rng = Rng::new(1, 0);
    // Batches of 2 take the dot-product path of forward, 9 the matrix product.
    let cases =
        [(2, 5, 3, true), (2, 7, 4, false), (2, 1, 1, true), (9, 5, 3, true), (9, 17, 20, false)];
    for (n, fan_in, fan_out, bias) in cases {
        let mut layer = Linear::new(fan_in, fan_out, bias, &mut rng);
        let x = random(&[n, fan_in], &mut rng);
        gradcheck(&format!("linear {fan_in}->{fan_out}"), &mut layer, &x, &mut rng);
    }
}

#[test]
fn conv2d_gradients() {
    let mut rng = Rng::new(2, 0);
    let geometries = [
        // (in, out, [h, w], kernel, stride, padding, groups, bias)
        (3, 4, [5, 5], [3, 3], [1, 1], [0, 0], 1, true),
        (3, 2, [5, 5], [3, 3], [2, 2], [1, 1], 1, true),
        (3, 4, [7, 6], [5, 5], [2, 1], [2, 2], 1, false),
        (3, 5, [5, 4], [3, 2], [1, 2], [1, 0], 1, true),
        (3, 3, [5, 5], [1, 1], [1, 1], [0, 0], 1, true),
        (4, 6, [5, 5], [3, 3], [1, 1], [1, 1], 2, true),
        (3, 3, [6, 5], [3, 3], [2, 2], [1, 1], 3, false),
    ];
    for (c, out, [h, w], kernel, stride, padding, groups, bias) in geometries {
        let config = Conv2dConfig {
            in_channels: c,
            out_channels: out,
            kernel,
            stride,
            padding,
            groups,
            bias,
        };
        for unfold_only in [false, true] {
            let mut layer = Conv2d::new(config, &mut rng);
            layer.set_unfold_only(unfold_only);
            let x = random(&[2, c, h, w], &mut rng);
            gradcheck(&format!("{config:?} unfold only {unfold_only}"), &mut layer, &x, &mut rng);
        }
    }
}

#[test]
fn maxpool_gradients() {
    let mut rng = Rng::new(3, 0);
    let geometries = [
        ([5, 5], [2, 2], [2, 2], [0, 0]),
        ([5, 5], [3, 3], [2, 2], [1, 1]),
        ([6, 7], [3, 2], [1, 2], [1, 0]),
        ([4, 4], [2, 2], [1, 1], [0, 0]),
    ];
    for ([h, w], kernel, stride, padding) in geometries {
        let mut layer = MaxPool2d::new(kernel, stride, padding);
        let x = spaced(&[2, 3, h, w], &mut rng);
        gradcheck(&format!("maxpool {kernel:?} {stride:?} {padding:?}"), &mut layer, &x, &mut rng);
    }
}

#[test]
fn relu_and_flatten_gradients() {
    let mut rng = Rng::new(4, 0);
    let x = spaced(&[2, 3, 5, 5], &mut rng);
    gradcheck("relu", &mut Relu, &x, &mut rng);
    gradcheck("flatten", &mut Flatten, &x, &mut rng);
}
