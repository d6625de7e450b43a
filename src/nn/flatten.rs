//! Flatten `[n, c, h, w]` to `[n, c·h·w]`, channel-major as PyTorch's
//! `nn.Flatten` does.

use super::{Layer, Mode};
use crate::tensor::Tensor;

/// Keeps the batch dimension and joins all others.
#[derive(Clone, Debug, Default)]
pub struct Flatten;

impl Layer for Flatten {
    fn spec(&self) -> String {
        "flatten".into()
    }

    fn output_shape(&self, x_shape: &[usize]) -> Vec<usize> {
        vec![x_shape[0], x_shape[1..].iter().product()]
    }

    fn forward(&mut self, x: &Tensor, y: &mut Tensor, _mode: Mode) {
        // Row-major storage is already flat; only the shape changes.
        y.data_mut().copy_from_slice(x.data());
    }

    fn backward(&mut self, _x: &Tensor, _y: &Tensor, dy: &Tensor, dx: Option<&mut Tensor>) {
        if let Some(dx) = dx {
            dx.data_mut().copy_from_slice(dy.data());
        }
    }
}
