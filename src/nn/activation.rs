//! Elementwise activations.

use rayon::prelude::*;

use super::{Layer, Mode};
use crate::tensor::Tensor;

/// Elements per task: large enough that the pool's overhead is small, small
/// enough that a batch splits over the threads.
const CHUNK: usize = 1 << 15;

/// `max(x, 0)` as a compare and select, which vectorises (`f32::max` would
/// not, and would turn NaN into 0).
#[inline(always)]
pub(crate) fn relu(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

/// The gradient through a ReLU whose output is `y`: `dy` where `y > 0`.
#[inline(always)]
pub(crate) fn relu_grad(dy: f32, y: f32) -> f32 {
    if y > 0.0 {
        dy
    } else {
        0.0
    }
}

/// Applies a ReLU in place (a layer that fused the ReLU after it).
pub(crate) fn relu_in_place(y: &mut [f32]) {
    y.iter_mut().for_each(|v| *v = relu(*v));
}

/// Multiplies `dx` in place by the derivative of the ReLU that produced `x`
/// (a layer that fused the ReLU before it).
pub(crate) fn relu_mask_in_place(dx: &mut [f32], x: &[f32]) {
    dx.iter_mut().zip(x).for_each(|(dx, &x)| *dx = relu_grad(*dx, x));
}

/// `y = max(x, 0)`. Its derivative at 0 is taken as 0 and a NaN passes
/// through, as in PyTorch.
#[derive(Clone, Debug, Default)]
pub struct Relu;

impl Layer for Relu {
    fn spec(&self) -> String {
        "relu".into()
    }

    fn output_shape(&self, x_shape: &[usize]) -> Vec<usize> {
        x_shape.to_vec()
    }

    fn forward(&mut self, x: &Tensor, y: &mut Tensor, _mode: Mode) {
        let ys = y.data_mut().par_chunks_mut(CHUNK).zip(x.data().par_chunks(CHUNK));
        ys.for_each(|(y, x)| {
            y.iter_mut().zip(x).for_each(|(y, &x)| *y = relu(x));
        });
    }

    fn backward(&mut self, _x: &Tensor, y: &Tensor, dy: &Tensor, dx: Option<&mut Tensor>) {
        // y > 0 exactly where x > 0, so the output doubles as the mask.
        if let Some(dx) = dx {
            let dxs = dx.data_mut().par_chunks_mut(CHUNK).zip(dy.data().par_chunks(CHUNK));
            dxs.zip(y.data().par_chunks(CHUNK)).for_each(|((dx, dy), y)| {
                let grads = dx.iter_mut().zip(dy).zip(y);
                grads.for_each(|((dx, &dy), &y)| *dx = relu_grad(dy, y));
            });
        }
    }

    fn is_relu(&self) -> bool {
        true
    }
}
