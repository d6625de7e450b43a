//! Max-pooling over each channel plane, parallel over the planes of a batch.

use rayon::prelude::*;

use super::{Layer, Mode};
use crate::kernels::{maxpool_2x2_backward, maxpool_plane, maxpool_plane_backward, Window};
use crate::tensor::Tensor;

/// 2-D max-pooling with PyTorch's rules (first maximum wins, padding never
/// wins, output size rounded down).
#[derive(Clone, Debug)]
pub struct MaxPool2d {
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    /// Flat `iy·w + ix` index of each output's maximum within its plane,
    /// cached by a training forward pass for backward.
    argmax: Vec<u32>,
    /// Multiply dx by the derivative of the ReLU before the layer (fused).
    relu_before: bool,
}

impl MaxPool2d {
    /// A pooling layer; PyTorch's default stride is the kernel size.
    pub fn new(kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> MaxPool2d {
        MaxPool2d { kernel, stride, padding, argmax: Vec::new(), relu_before: false }
    }

    fn window(&self, x_shape: &[usize]) -> Window {
        Window {
            c: 1,
            h: x_shape[2],
            w: x_shape[3],
            kh: self.kernel[0],
            kw: self.kernel[1],
            sh: self.stride[0],
            sw: self.stride[1],
            ph: self.padding[0],
            pw: self.padding[1],
        }
    }
}

/// Planes per task, at least: enough that a task reads about 64 KiB, so one
/// image's few small planes (inference latency) stay on one thread instead
/// of paying more to hand out than to pool. At most four times that, so a
/// thread slowed by another process holds up little when it stops mid-task.
fn planes_per_task(plane_in: usize) -> usize {
    (16 * 1024 / plane_in.max(1)).max(1)
}

impl Layer for MaxPool2d {
    fn spec(&self) -> String {
        let pair = |[a, b]: [usize; 2]| if a == b { a.to_string() } else { format!("{a}x{b}") };
        let mut spec = format!("maxpool({}", pair(self.kernel));
        if self.stride != self.kernel {
            spec += &format!(",stride={}", pair(self.stride));
        }
        if self.padding != [0, 0] {
            spec += &format!(",pad={}", pair(self.padding));
        }
        spec + ")"
    }

    fn output_shape(&self, x_shape: &[usize]) -> Vec<usize> {
        let g = self.window(x_shape);
        vec![x_shape[0], x_shape[1], g.oh(), g.ow()]
    }

    fn forward(&mut self, x: &Tensor, y: &mut Tensor, mode: Mode) {
        let g = self.window(x.shape());
        let (plane_in, plane_out) = (g.h * g.w, g.oh() * g.ow());
        if mode == Mode::Train {
            self.argmax.resize(y.numel(), 0);
        }
        let xs = x.data().par_chunks(plane_in);
        let ys = y.data_mut().par_chunks_mut(plane_out);
        let planes = planes_per_task(plane_in);
        if mode == Mode::Eval {
            let jobs = xs.zip(ys).with_min_len(planes).with_max_len(4 * planes);
            jobs.for_each(|(x, y)| maxpool_plane(&g, x, y, None));
            return;
        }
        let argmax = self.argmax.par_chunks_mut(plane_out);
        let jobs = xs.zip(ys).zip(argmax).with_min_len(planes).with_max_len(4 * planes);
        jobs.for_each(|((x, y), a)| maxpool_plane(&g, x, y, Some(a)));
    }

    fn backward(&mut self, x: &Tensor, y: &Tensor, dy: &Tensor, dx: Option<&mut Tensor>) {
        let Some(dx) = dx else { return };
        let g = self.window(x.shape());
        let (plane_in, plane_out) = (g.h * g.w, g.oh() * g.ow());
        assert_eq!(self.argmax.len(), dy.numel(), "maxpool: backward follows a training forward");
        let dxs = dx.data_mut().par_chunks_mut(plane_in);
        let jobs = dxs.zip(dy.data().par_chunks(plane_out)).zip(self.argmax.par_chunks(plane_out));
        let relu_before = self.relu_before;
        let planes = planes_per_task(plane_in);
        let jobs = jobs.with_min_len(planes).with_max_len(4 * planes);
        let disjoint = (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw) == (2, 2, 2, 2, 0, 0);
        jobs.zip(y.data().par_chunks(plane_out)).for_each(|(((dx, dy), argmax), y)| {
            // Through a ReLU before the pooling, a gradient reaches its
            // input only where the maximum (the ReLU's output there) is > 0.
            let mask = relu_before.then_some(y);
            if disjoint {
                maxpool_2x2_backward(&g, argmax, dy, mask, dx);
            } else {
                dx.fill(0.0);
                maxpool_plane_backward(argmax, dy, mask, dx);
            }
        });
    }

    fn fuse_relu_before(&mut self, on: bool) -> bool {
        self.relu_before = on;
        true
    }
}
