//! Fully connected layer, `y = x · wᵀ + b`, with PyTorch's weight layout
//! `[out, in]`.

use super::activation::relu_in_place;
use super::{default_init_bound, Layer, Mode, Param};
use rayon::prelude::*;

use crate::kernels::{dot, gemm_nt_rows, Gemm};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Forward passes smaller than this many multiply-adds run on one thread.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// `y [n, out] = x [n, in] · wᵀ + b`.
#[derive(Clone, Debug)]
pub struct Linear {
    in_features: usize,
    out_features: usize,
    /// `[weight [out, in], bias [out]]`, or just the weight.
    params: Vec<Param>,
    /// Apply the ReLU that follows the layer to its output (fused).
    relu_after: bool,
}

impl Linear {
    /// A layer with PyTorch's default initialisation: weight and bias from
    /// `U(±1/√in)`.
    pub fn new(in_features: usize, out_features: usize, bias: bool, rng: &mut Rng) -> Linear {
        let bound = default_init_bound(in_features);
        let mut params = vec![Param::uniform(&[out_features, in_features], bound, rng)];
        if bias {
            params.push(Param::uniform(&[out_features], bound, rng));
        }
        Linear { in_features, out_features, params, relu_after: false }
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

impl Layer for Linear {
    fn spec(&self) -> String {
        let bias = if self.params.len() == 2 { "" } else { ",bias=false" };
        format!("linear({}{bias})", self.out_features)
    }

    fn output_shape(&self, x_shape: &[usize]) -> Vec<usize> {
        vec![x_shape[0], self.out_features]
    }

    fn forward(&mut self, x: &Tensor, y: &mut Tensor, _mode: Mode) {
        let n = x.dim(0);
        assert_eq!(x.row_width(), self.in_features, "linear: input width checked at build");

        // Start from the bias in every row, then add x · wᵀ on top.
        let out = y.data_mut();
        match self.params.get(1) {
            Some(bias) => out.chunks_mut(self.out_features).for_each(|row| {
                row.copy_from_slice(bias.value.data());
            }),
            None => out.fill(0.0),
        }
        // Every output is a dot product of a row of x with a row of w, both
        // read in place, in tiles of a few rows each; rows split over threads.
        let weight = self.params[0].value.data();
        let (fan_in, fan_out) = (self.in_features, self.out_features);
        let dims = (n, fan_out, fan_in);
        let big = n * fan_in * fan_out >= PARALLEL_MIN_MACS;
        let relu_after = self.relu_after;
        let finish = |y: &mut [f32]| {
            if relu_after {
                relu_in_place(y);
            }
        };
        if n == 1 {
            // One image (inference latency): split the outputs instead, one
            // run per thread, so that each thread reads the same rows of the
            // weight on every call and finds them in its own cache.
            let per_task = fan_out.div_ceil(rayon::current_num_threads()).max(64);
            let w_rows = weight.par_chunks(per_task * fan_in);
            out.par_chunks_mut(per_task).zip(w_rows).for_each(|(ys, w)| {
                for (y, w_row) in ys.iter_mut().zip(w.chunks(fan_in)) {
                    *y += dot(x.data(), w_row);
                }
                finish(ys);
            });
            return;
        }
        if !big {
            gemm_nt_rows(x.data(), weight, dims, 0..n, out, true);
            finish(out);
            return;
        }
        let per_task = n.div_ceil(2 * rayon::current_num_threads()).max(1);
        let tasks = out.par_chunks_mut(per_task * fan_out).enumerate().with_max_len(1);
        tasks.for_each(|(t, rows)| {
            let first = t * per_task;
            gemm_nt_rows(x.data(), weight, dims, first..(first + per_task).min(n), rows, true);
            finish(rows);
        });
    }

    fn backward(&mut self, x: &Tensor, _y: &Tensor, dy: &Tensor, dx: Option<&mut Tensor>) {
        let n = x.dim(0);
        let (fan_in, fan_out) = (self.in_features, self.out_features);

        // dweight [out, in] += dyᵀ · x, summed over the batch.
        Gemm::new(fan_out, fan_in, n).ta().acc().run_par(
            dy.data(),
            x.data(),
            self.params[0].grad.data_mut(),
        );

        // dbias [out] += Σ_n dy.
        if let Some(bias) = self.params.get_mut(1) {
            let dbias = bias.grad.data_mut();
            for row in dy.data().chunks(fan_out) {
                dbias.iter_mut().zip(row).for_each(|(d, g)| *d += g);
            }
        }

        // dx [n, in] = dy · w.
        if let Some(dx) = dx {
            let weight = self.params[0].value.data();
            Gemm::new(n, fan_in, fan_out).run_par(dy.data(), weight, dx.data_mut());
        }
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    fn param_names(&self) -> &'static [&'static str] {
        &["weight", "bias"][..self.params.len()]
    }

    fn flops(&self, x_shape: &[usize]) -> u64 {
        2 * (x_shape[0] * self.in_features * self.out_features) as u64
    }

    fn fuse_relu_after(&mut self, on: bool) -> bool {
        self.relu_after = on;
        true
    }
}
