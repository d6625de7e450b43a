//! Flatten `[n, c, h, w]` to `[n, c·h·w]`, channel-major as PyTorch's
//! `nn.Flatten` does.

use rayon::prelude::*;

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

    fn is_reshape(&self) -> bool {
        true
    }

    fn forward(&mut self, x: &Tensor, y: &mut Tensor, _mode: Mode) {
        // Row-major storage is already flat; only the shape changes.
        parallel_copy(y.data_mut(), x.data());
    }

    fn backward(&mut self, _x: &Tensor, _y: &Tensor, dy: &Tensor, dx: Option<&mut Tensor>) {
        if let Some(dx) = dx {
            parallel_copy(dx.data_mut(), dy.data());
        }
    }
}

/// A copy split over the thread pool.
fn parallel_copy(dst: &mut [f32], src: &[f32]) {
    const CHUNK: usize = 1 << 15;
    let pairs = dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK));
    pairs.for_each(|(d, s)| d.copy_from_slice(s));
}
