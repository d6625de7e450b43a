//! 2-D convolution (cross-correlation, as PyTorch) by im2col and a matrix
//! product per image, parallel over the batch.
//!
//! Weight layout `[out, in/groups, kh, kw]`; output channel `o` reads input
//! group `o / (out/groups)`.

use rayon::prelude::*;

use super::{default_init_bound, Layer, Mode, Param};
use crate::kernels::{col2im, gemm_packed, im2col, im2row, PackedA, Window};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Hyper-parameters of a [`Conv2d`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Zero padding `[ph, pw]` on both sides.
    pub padding: [usize; 2],
    /// Channel groups; both channel counts must divide by it.
    pub groups: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
}

/// Scratch space for one slice of the batch, so chunks run in parallel
/// without sharing buffers.
#[derive(Clone, Debug, Default)]
struct Chunk {
    /// Unfolded image `[c·kh·kw, oh·ow]` (forward), its transpose (for
    /// dweight), then dcols (for dx): one buffer, used in turn.
    cols: Vec<f32>,
    /// `dy` of one group, packed as the left operand of dweight.
    packed_dy: PackedA,
    /// This chunk's share of dweight, summed in chunk order afterwards so the
    /// result does not depend on scheduling.
    dweight: Vec<f32>,
    /// This chunk's share of dbias.
    dbias: Vec<f32>,
}

/// A 2-D convolution layer.
#[derive(Clone, Debug)]
pub struct Conv2d {
    config: Conv2dConfig,
    /// `[weight [out, in/groups, kh, kw], bias [out]]`, or just the weight.
    params: Vec<Param>,
    chunks: Vec<Chunk>,
    /// Each group's weight `[m, k]`, packed for the forward product.
    packed: Vec<PackedA>,
    /// Each group's weight transposed, `[k, m]`, packed for dcols.
    packed_t: Vec<PackedA>,
}

impl Conv2d {
    /// A layer with PyTorch's default initialisation, `U(±1/√fan_in)` with
    /// `fan_in = in/groups · kh · kw` for weight and bias.
    pub fn new(config: Conv2dConfig, rng: &mut Rng) -> Conv2d {
        let [kh, kw] = config.kernel;
        let fan_in = config.in_channels / config.groups * kh * kw;
        let bound = default_init_bound(fan_in);
        let shape = [config.out_channels, config.in_channels / config.groups, kh, kw];
        let mut params = vec![Param::uniform(&shape, bound, rng)];
        if config.bias {
            params.push(Param::uniform(&[config.out_channels], bound, rng));
        }
        Conv2d { config, params, chunks: Vec::new(), packed: Vec::new(), packed_t: Vec::new() }
    }

    /// The layer's hyper-parameters.
    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }

    fn window(&self, x_shape: &[usize]) -> Window {
        let Conv2dConfig { kernel, stride, padding, .. } = self.config;
        Window {
            c: x_shape[1],
            h: x_shape[2],
            w: x_shape[3],
            kh: kernel[0],
            kw: kernel[1],
            sh: stride[0],
            sw: stride[1],
            ph: padding[0],
            pw: padding[1],
        }
    }

    /// Packs every group's weight (transposed for backward), once per pass.
    fn pack_weights(&mut self, dims: GroupDims, transposed: bool) {
        let GroupDims { groups, m, k, .. } = dims;
        let weight = self.params[0].value.data();
        let packed = if transposed { &mut self.packed_t } else { &mut self.packed };
        packed.resize_with(groups, PackedA::default);
        for (gi, pack) in packed.iter_mut().enumerate() {
            let w_g = &weight[gi * m * k..(gi + 1) * m * k];
            if transposed {
                pack.pack(w_g, k, m, true);
            } else {
                pack.pack(w_g, m, k, false);
            }
        }
    }

    /// Splits a batch of `n` into one contiguous run of images per thread and
    /// sizes each chunk's scratch.
    fn prepare_chunks(&mut self, n: usize, g: &Window) -> usize {
        let parts = rayon::current_num_threads().clamp(1, n.max(1));
        let cols_len = g.col_rows() * g.col_cols();
        let weight_len = self.params[0].value.numel();
        self.chunks.resize_with(parts, Chunk::default);
        for chunk in &mut self.chunks[..parts] {
            chunk.cols.resize(cols_len, 0.0);
            chunk.dweight.resize(weight_len, 0.0);
            chunk.dbias.resize(self.config.out_channels, 0.0);
        }
        n.div_ceil(parts)
    }
}

/// Shapes of one group's matrix product: `y_g [m, p] = w_g [m, k] · cols_g [k, p]`.
#[derive(Clone, Copy)]
struct GroupDims {
    groups: usize,
    m: usize,
    k: usize,
    p: usize,
}

impl GroupDims {
    fn new(config: &Conv2dConfig, g: &Window) -> GroupDims {
        GroupDims {
            groups: config.groups,
            m: config.out_channels / config.groups,
            k: g.col_rows() / config.groups,
            p: g.col_cols(),
        }
    }
}

impl Layer for Conv2d {
    fn spec(&self) -> String {
        let c = &self.config;
        let mut spec = format!("conv({}", c.out_channels);
        if c.kernel[0] == c.kernel[1] {
            spec += &format!(",{}", c.kernel[0]);
        } else {
            spec += &format!(",{}x{}", c.kernel[0], c.kernel[1]);
        }
        for (name, [a, b], default) in [("stride", c.stride, 1), ("pad", c.padding, 0)] {
            if a != b {
                spec += &format!(",{name}={a}x{b}");
            } else if a != default {
                spec += &format!(",{name}={a}");
            }
        }
        if c.groups != 1 {
            spec += &format!(",groups={}", c.groups);
        }
        if !c.bias {
            spec += ",bias=false";
        }
        spec + ")"
    }

    fn output_shape(&self, x_shape: &[usize]) -> Vec<usize> {
        let g = self.window(x_shape);
        vec![x_shape[0], self.config.out_channels, g.oh(), g.ow()]
    }

    fn forward(&mut self, x: &Tensor, y: &mut Tensor, _mode: Mode) {
        let n = x.dim(0);
        let g = self.window(x.shape());
        let dims = GroupDims::new(&self.config, &g);
        let per_chunk = self.prepare_chunks(n, &g);
        self.pack_weights(dims, false);
        let (x_len, y_len) = (x.row_width(), y.row_width());
        let packed = &self.packed;
        let bias = self.params.get(1).map(|b| b.value.data());

        // Each chunk of images: unfold, then y_g = w_g · cols_g per group.
        let xs = x.data().par_chunks(per_chunk * x_len);
        let ys = y.data_mut().par_chunks_mut(per_chunk * y_len);
        xs.zip(ys).zip(&mut self.chunks).for_each(|((xs, ys), chunk)| {
            for (x, y) in xs.chunks(x_len).zip(ys.chunks_mut(y_len)) {
                conv_image(&g, dims, packed, bias, x, y, &mut chunk.cols);
            }
        });
    }

    fn backward(&mut self, x: &Tensor, _y: &Tensor, dy: &Tensor, dx: Option<&mut Tensor>) {
        let n = x.dim(0);
        let g = self.window(x.shape());
        let dims = GroupDims::new(&self.config, &g);
        let per_chunk = self.prepare_chunks(n, &g);
        let parts = n.div_ceil(per_chunk);
        let (x_len, y_len) = (x.row_width(), dy.row_width());
        if dx.is_some() {
            self.pack_weights(dims, true);
        }
        let packed_t = &self.packed_t;

        // Per chunk: its share of dweight and dbias, and dx for its images.
        let xs = x.data().par_chunks(per_chunk * x_len);
        let dys = dy.data().par_chunks(per_chunk * y_len);
        let chunks = &mut self.chunks[..parts];
        let job = |xs: &[f32], dys: &[f32], mut dxs: Option<&mut [f32]>, chunk: &mut Chunk| {
            chunk.dweight.fill(0.0);
            chunk.dbias.fill(0.0);
            for (i, (x, dy)) in xs.chunks(x_len).zip(dys.chunks(y_len)).enumerate() {
                let dx = dxs.as_deref_mut().map(|d| &mut d[i * x_len..(i + 1) * x_len]);
                conv_image_backward(&g, dims, packed_t, x, dy, dx, chunk);
            }
        };
        match dx {
            Some(dx) => {
                let dxs = dx.data_mut().par_chunks_mut(per_chunk * x_len);
                let jobs = xs.zip(dys).zip(dxs).zip(chunks);
                jobs.for_each(|(((xs, dys), dxs), chunk)| job(xs, dys, Some(dxs), chunk));
            }
            None => {
                xs.zip(dys).zip(chunks).for_each(|((xs, dys), chunk)| job(xs, dys, None, chunk))
            }
        }

        // Sum the chunks' shares in a fixed order.
        let has_bias = self.params.len() == 2;
        for chunk in &self.chunks[..parts] {
            let dweight = self.params[0].grad.data_mut();
            dweight.iter_mut().zip(&chunk.dweight).for_each(|(d, s)| *d += s);
            if has_bias {
                let dbias = self.params[1].grad.data_mut();
                dbias.iter_mut().zip(&chunk.dbias).for_each(|(d, s)| *d += s);
            }
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
        let g = self.window(x_shape);
        let dims = GroupDims::new(&self.config, &g);
        2 * (x_shape[0] * dims.groups * dims.m * dims.k * dims.p) as u64
    }
}

/// Forward for one image: `y [out, p]` from `x [c, h, w]`.
fn conv_image(
    g: &Window,
    dims: GroupDims,
    packed: &[PackedA],
    bias: Option<&[f32]>,
    x: &[f32],
    y: &mut [f32],
    cols: &mut [f32],
) {
    let GroupDims { groups, m, k, p } = dims;

    // Bias first, so the product can accumulate on top of it.
    match bias {
        Some(bias) => y.chunks_mut(p).zip(bias).for_each(|(row, &b)| row.fill(b)),
        None => y.fill(0.0),
    }

    let cols: &[f32] = if g.is_identity() {
        x
    } else {
        im2col(g, x, cols);
        cols
    };
    for (gi, w_g) in packed.iter().enumerate().take(groups) {
        let cols_g = &cols[gi * k * p..(gi + 1) * k * p];
        gemm_packed(w_g, cols_g, p, p, &mut y[gi * m * p..(gi + 1) * m * p], p, true);
    }
}

/// Backward for one image: adds into the chunk's dweight and dbias and, when
/// asked, overwrites `dx [c, h, w]`.
fn conv_image_backward(
    g: &Window,
    dims: GroupDims,
    packed_t: &[PackedA],
    x: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    chunk: &mut Chunk,
) {
    let GroupDims { groups, m, k, p } = dims;

    // dbias[o] += Σ_p dy[o, p].
    for (db, row) in chunk.dbias.iter_mut().zip(dy.chunks(p)) {
        *db += row.iter().sum::<f32>();
    }

    // dweight_g [m, k] += dy_g [m, p] · cols_gᵀ, with colsᵀ unfolded directly
    // (im2row) and read in place. The unfolding is recomputed rather than kept
    // from forward, trading a cheap pass for batch·cols of memory.
    let rows = &mut chunk.cols;
    im2row(g, x, rows);
    for gi in 0..groups {
        chunk.packed_dy.pack(&dy[gi * m * p..(gi + 1) * m * p], m, p, false);
        let dw_g = &mut chunk.dweight[gi * m * k..(gi + 1) * m * k];
        gemm_packed(&chunk.packed_dy, &rows[gi * k..], groups * k, k, dw_g, k, true);
    }

    // dcols_g [k, p] = w_gᵀ · dy_g, folded back onto dx.
    let Some(dx) = dx else { return };
    let identity = g.is_identity();
    let dcols = if identity { &mut *dx } else { &mut chunk.cols[..] };
    for (gi, wt_g) in packed_t.iter().enumerate().take(groups) {
        let dy_g = &dy[gi * m * p..(gi + 1) * m * p];
        gemm_packed(wt_g, dy_g, p, p, &mut dcols[gi * k * p..(gi + 1) * k * p], p, false);
    }
    if !identity {
        dx.fill(0.0);
        col2im(g, &chunk.cols, dx);
    }
}
