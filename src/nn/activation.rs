//! Elementwise activations.

use super::{Layer, Mode};
use crate::tensor::Tensor;

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
        // A compare and select, which vectorises (`f32::max` would not, and
        // would turn NaN into 0).
        y.data_mut()
            .iter_mut()
            .zip(x.data())
            .for_each(|(y, &x)| *y = if x < 0.0 { 0.0 } else { x });
    }

    fn backward(&mut self, _x: &Tensor, y: &Tensor, dy: &Tensor, dx: Option<&mut Tensor>) {
        // y > 0 exactly where x > 0, so the output doubles as the mask.
        if let Some(dx) = dx {
            let grads = dx.data_mut().iter_mut().zip(dy.data()).zip(y.data());
            grads.for_each(|((dx, &dy), &y)| *dx = if y > 0.0 { dy } else { 0.0 });
        }
    }
}
