//! 2-D convolution (cross-correlation, as PyTorch), parallel over the batch.
//!
//! Two algorithms. Stride 1 on a CPU with AVX2 runs direct: the product
//! reads the zero-padded image in place ([`conv_rows`]), and the input
//! gradient is the same kernel on the padded `dy` with flipped weights.
//! Otherwise each image is unfolded (im2col) and multiplied, and the input
//! gradient folded back (col2im). The weight gradient always multiplies `dy`
//! by the transposed unfolding (im2row).
//!
//! Weight layout `[out, in/groups, kh, kw]`; output channel `o` reads input
//! group `o / (out/groups)`.

use rayon::prelude::*;

use super::activation::{relu_in_place, relu_mask_in_place};
use super::{default_init_bound, Layer, Mode, Param};
use crate::kernels::{
    col2im, conv_rows, conv_rows_split, conv_weight_grad, direct_conv_available, gemm_packed,
    im2col, im2row, pad_image, sum, transpose, PackedA, Padded, Store, Window, SLACK,
};
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
    /// Unfolded image `[c·kh·kw, oh·ow]`, its transpose (for dweight), or
    /// dcols (for dx): one buffer, used in turn.
    cols: Vec<f32>,
    /// The zero-padded image `x` for the direct kernels.
    padded: Vec<f32>,
    /// The zero-padded `dy`, for dx by the direct kernel.
    padded_dy: Vec<f32>,
    /// `dy` transposed, `[oh·ow, out]`, for dweight by the direct kernel.
    dyt: Vec<f32>,
    /// `dy` of one group, packed as the left operand of dweight.
    packed_dy: PackedA,
    /// This chunk's share of dweight, summed in chunk order afterwards so the
    /// result does not depend on scheduling. Direct plans keep it transposed
    /// per group, `[groups][k][m]`.
    dweight: Vec<f32>,
    /// This chunk's share of dbias.
    dbias: Vec<f32>,
}

/// Everything that depends only on the input shape, computed once per shape.
#[derive(Clone, Debug)]
struct Plan {
    /// Geometry of one image.
    g: Window,
    dims: GroupDims,
    /// Forward by the direct kernel, and its padded-image offsets.
    forward: Option<Padded>,
    /// dx by the direct kernel: `dy` as an image, padded by `k − 1 − p`.
    backward: Option<(Window, Padded)>,
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
    /// Each group's weight packed for dx: transposed `[k, m]` for dcols, or
    /// flipped and transposed `[in/groups, m·kh·kw]` for the direct kernel.
    packed_dx: Vec<PackedA>,
    /// Scratch for the flipped weight of one group.
    flipped: Vec<f32>,
    /// Whether `packed` and `packed_dx` hold the current weight: packing is
    /// redone only after the weight may have changed (`params_mut`) or the
    /// plan did, so inference packs once.
    packed_fresh: bool,
    packed_dx_fresh: bool,
    plan: Option<Plan>,
    /// Use the unfolding algorithm even where the direct one applies.
    unfold_only: bool,
    /// Apply the ReLU that follows the layer to its output (fused).
    relu_after: bool,
    /// Multiply dx by the derivative of the ReLU before the layer (fused).
    relu_before: bool,
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
        Conv2d {
            config,
            params,
            chunks: Vec::new(),
            packed: Vec::new(),
            packed_dx: Vec::new(),
            flipped: Vec::new(),
            packed_fresh: false,
            packed_dx_fresh: false,
            plan: None,
            unfold_only: false,
            relu_after: false,
            relu_before: false,
        }
    }

    /// The layer's hyper-parameters.
    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }

    /// Makes the layer use im2col/col2im everywhere (both algorithms give the
    /// same numbers up to rounding; tests compare them).
    pub fn set_unfold_only(&mut self, unfold_only: bool) {
        self.unfold_only = unfold_only;
        self.plan = None;
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

    /// Makes the plan for `x_shape` when the shape changed, and sizes every
    /// chunk's scratch; returns the images per chunk.
    fn prepare(&mut self, x_shape: &[usize]) -> usize {
        let g = self.window(x_shape);
        if self.plan.as_ref().is_none_or(|plan| plan.g != g) {
            self.plan = Some(self.make_plan(g));
            (self.packed_fresh, self.packed_dx_fresh) = (false, false);
        }
        self.prepare_chunks(x_shape[0])
    }

    fn make_plan(&self, g: Window) -> Plan {
        let direct = !self.unfold_only && direct_conv_available() && (g.sh, g.sw) == (1, 1);
        let dx_window = Window {
            c: self.config.out_channels,
            h: g.oh(),
            w: g.ow(),
            ph: g.kh.wrapping_sub(1 + g.ph),
            pw: g.kw.wrapping_sub(1 + g.pw),
            ..g
        };
        Plan {
            g,
            dims: GroupDims::new(&self.config, &g),
            forward: direct.then(|| Padded::new(&g)),
            backward: (direct && g.ph < g.kh && g.pw < g.kw)
                .then(|| (dx_window, Padded::new(&dx_window))),
        }
    }

    /// Packs every group's weight for the forward product.
    fn pack_forward(&mut self) {
        let GroupDims { groups, m, k, .. } = self.plan.as_ref().expect("prepared").dims;
        let weight = self.params[0].value.data();
        self.packed.resize_with(groups, PackedA::default);
        for (gi, pack) in self.packed.iter_mut().enumerate() {
            pack.pack(&weight[gi * m * k..(gi + 1) * m * k], m, k, false);
        }
    }

    /// Packs every group's weight for dx: transposed for dcols, or flipped
    /// (`w'[ci, (o, ki, kj)] = w[o, ci, kh−1−ki, kw−1−kj]`) for the direct
    /// kernel.
    fn pack_backward(&mut self) {
        let plan = self.plan.as_ref().expect("prepared");
        let (GroupDims { groups, m, k, .. }, direct) = (plan.dims, plan.backward.is_some());
        let [kh, kw] = self.config.kernel;
        let cg = k / (kh * kw);
        let weight = self.params[0].value.data();
        self.packed_dx.resize_with(groups, PackedA::default);
        for (gi, pack) in self.packed_dx.iter_mut().enumerate() {
            let w_g = &weight[gi * m * k..(gi + 1) * m * k];
            if !direct {
                pack.pack(w_g, k, m, true);
                continue;
            }
            self.flipped.resize(m * k, 0.0);
            for o in 0..m {
                for ci in 0..cg {
                    for t in 0..kh * kw {
                        let flipped_tap = kh * kw - 1 - t;
                        self.flipped[ci * m * kh * kw + o * kh * kw + t] =
                            w_g[(o * cg + ci) * kh * kw + flipped_tap];
                    }
                }
            }
            pack.pack(&self.flipped, cg, m * kh * kw, false);
        }
    }

    /// Splits a batch of `n` into contiguous runs of images and sizes each
    /// chunk's scratch. The split depends only on `n` and the thread count,
    /// so results do too.
    fn prepare_chunks(&mut self, n: usize) -> usize {
        // A few chunks per thread, each run as a task of its own, so that a
        // thread slowed by another process leaves its share to be stolen
        // instead of holding up the step (left to itself, rayon would hand
        // each thread half of the chunks as one task).
        let threads = rayon::current_num_threads();
        let parts = if threads == 1 { 1 } else { 4 * threads }.clamp(1, n.max(1));
        let plan = self.plan.as_ref().expect("planned before chunks are sized");
        let g = &plan.g;
        let cols_len = g.col_rows() * g.col_cols();
        let padded_len = plan.forward.as_ref().map_or(0, |pad| pad.len(g.c));
        let padded_dy_len = plan.backward.as_ref().map_or(0, |(gd, pad)| pad.len(gd.c));
        let dyt_len = if plan.forward.is_some() {
            g.col_cols() * self.config.out_channels + SLACK
        } else {
            0
        };
        let weight_len = self.params[0].value.numel();
        self.chunks.resize_with(parts, Chunk::default);
        for chunk in &mut self.chunks[..parts] {
            chunk.cols.resize(cols_len, 0.0);
            chunk.padded.resize(padded_len, 0.0);
            chunk.padded_dy.resize(padded_dy_len, 0.0);
            chunk.dyt.resize(dyt_len, 0.0);
            chunk.dweight.resize(weight_len, 0.0);
            chunk.dbias.resize(self.config.out_channels, 0.0);
        }
        n.div_ceil(parts)
    }
}

/// Shapes of one group's matrix product: `y_g [m, p] = w_g [m, k] · cols_g [k, p]`.
#[derive(Clone, Copy, Debug)]
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
        let per_chunk = self.prepare(x.shape());
        if !self.packed_fresh {
            self.pack_forward();
            self.packed_fresh = true;
        }
        let (x_len, y_len) = (x.row_width(), y.row_width());
        let Conv2d { plan, chunks, packed, params, .. } = self;
        let plan = plan.as_ref().expect("prepared above");
        let bias = params.get(1).map(|b| b.value.data());

        let relu_after = self.relu_after;

        // One image (inference latency): split its output channels instead.
        if x.dim(0) == 1 && plan.forward.is_some() && rayon::current_num_threads() > 1 {
            let (x, y) = (x.data(), y.data_mut());
            conv_image_split(plan, packed, bias, x, y, &mut chunks[0], relu_after);
            return;
        }

        // Each chunk of images, one image at a time; every chunk a task of
        // its own (see `prepare_chunks`).
        let xs = x.data().par_chunks(per_chunk * x_len);
        let ys = y.data_mut().par_chunks_mut(per_chunk * y_len);
        xs.zip(ys).zip(chunks).with_max_len(1).for_each(|((xs, ys), chunk)| {
            for (x, y) in xs.chunks(x_len).zip(ys.chunks_mut(y_len)) {
                conv_image(plan, packed, bias, x, y, chunk, relu_after);
            }
        });
    }

    fn backward(&mut self, x: &Tensor, _y: &Tensor, dy: &Tensor, dx: Option<&mut Tensor>) {
        let per_chunk = self.prepare(x.shape());
        let parts = x.dim(0).div_ceil(per_chunk);
        let (x_len, y_len) = (x.row_width(), dy.row_width());
        if dx.is_some() && !self.packed_dx_fresh {
            self.pack_backward();
            self.packed_dx_fresh = true;
        }
        let Conv2d { plan, chunks, packed_dx, relu_before, .. } = self;
        let (plan, relu_before) = (plan.as_ref().expect("prepared above"), *relu_before);

        // Per chunk: its share of dweight and dbias, and dx for its images.
        let xs = x.data().par_chunks(per_chunk * x_len);
        let dys = dy.data().par_chunks(per_chunk * y_len);
        let chunks = &mut chunks[..parts];
        let job = |xs: &[f32], dys: &[f32], mut dxs: Option<&mut [f32]>, chunk: &mut Chunk| {
            chunk.dweight.fill(0.0);
            chunk.dbias.fill(0.0);
            for (i, (x, dy)) in xs.chunks(x_len).zip(dys.chunks(y_len)).enumerate() {
                let mut dx = dxs.as_deref_mut().map(|d| &mut d[i * x_len..(i + 1) * x_len]);
                conv_image_backward(plan, packed_dx, x, dy, dx.as_deref_mut(), chunk);
                if let (Some(dx), true) = (dx, relu_before) {
                    relu_mask_in_place(dx, x);
                }
            }
        };
        match dx {
            Some(dx) => {
                let dxs = dx.data_mut().par_chunks_mut(per_chunk * x_len);
                let jobs = xs.zip(dys).zip(dxs).zip(chunks).with_max_len(1);
                jobs.for_each(|(((xs, dys), dxs), chunk)| job(xs, dys, Some(dxs), chunk));
            }
            None => {
                let jobs = xs.zip(dys).zip(chunks).with_max_len(1);
                jobs.for_each(|((xs, dys), chunk)| job(xs, dys, None, chunk))
            }
        }

        // Sum the chunks' shares in a fixed order.
        let has_bias = self.params.len() == 2;
        let GroupDims { m, k, .. } = plan.dims;
        let transposed = plan.forward.is_some();
        for chunk in &self.chunks[..parts] {
            let dweight = self.params[0].grad.data_mut();
            if transposed {
                // [groups][k][m] back to [groups][m][k].
                for (dw_g, dwt_g) in dweight.chunks_mut(m * k).zip(chunk.dweight.chunks(m * k)) {
                    for (kk, row) in dwt_g.chunks(m).enumerate() {
                        row.iter().enumerate().for_each(|(o, v)| dw_g[o * k + kk] += v);
                    }
                }
            } else {
                dweight.iter_mut().zip(&chunk.dweight).for_each(|(d, s)| *d += s);
            }
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
        // The caller may change the weight.
        (self.packed_fresh, self.packed_dx_fresh) = (false, false);
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

    fn fuse_relu_after(&mut self, on: bool) -> bool {
        self.relu_after = on;
        true
    }

    fn fuse_relu_before(&mut self, on: bool) -> bool {
        self.relu_before = on;
        true
    }
}

/// Forward for one image: `y [out, p]` from `x [c, h, w]`, then the ReLU
/// after the layer when it is fused (`relu`).
fn conv_image(
    plan: &Plan,
    packed: &[PackedA],
    bias: Option<&[f32]>,
    x: &[f32],
    y: &mut [f32],
    chunk: &mut Chunk,
    relu: bool,
) {
    let (g, GroupDims { m, k, p, .. }) = (&plan.g, plan.dims);

    // Bias first, so the products can accumulate on top of it.
    match bias {
        Some(bias) => y.chunks_mut(p).zip(bias).for_each(|(row, &b)| row.fill(b)),
        None => y.fill(0.0),
    }

    // Direct: y_g = w_g ⊛ x_g, reading the padded image in place.
    if let Some(pad) = &plan.forward {
        pad_image(g, pad, x, &mut chunk.padded);
        let group_len = (g.c / packed.len()) * pad.hp * pad.wp;
        for (gi, w_g) in packed.iter().enumerate() {
            let y_g = &mut y[gi * m * p..(gi + 1) * m * p];
            let taps = &pad.offsets[..k];
            let dims = (g.oh(), g.ow());
            conv_rows(w_g, &chunk.padded, gi * group_len, pad, taps, dims, y_g, add(relu));
        }
        return;
    }

    // Unfolded: y_g = w_g · cols_g.
    let cols: &[f32] = if g.is_identity() {
        x
    } else {
        im2col(g, x, &mut chunk.cols);
        &chunk.cols
    };
    for (gi, w_g) in packed.iter().enumerate() {
        let cols_g = &cols[gi * k * p..(gi + 1) * k * p];
        gemm_packed(w_g, cols_g, p, p, &mut y[gi * m * p..(gi + 1) * m * p], p, true);
    }
    if relu {
        // Still in cache: the image's output was just written.
        relu_in_place(y);
    }
}

/// How the direct kernel stores a forward pass: onto the bias, and through
/// the fused ReLU when there is one.
fn add(relu: bool) -> Store {
    if relu {
        Store::AddRelu
    } else {
        Store::Add
    }
}

/// Forward for one image by the direct kernel, its output positions split
/// over the thread pool.
fn conv_image_split(
    plan: &Plan,
    packed: &[PackedA],
    bias: Option<&[f32]>,
    x: &[f32],
    y: &mut [f32],
    chunk: &mut Chunk,
    relu: bool,
) {
    let (g, GroupDims { m, k, p, .. }) = (&plan.g, plan.dims);
    let pad = plan.forward.as_ref().expect("called for direct plans only");
    match bias {
        Some(bias) => y.chunks_mut(p).zip(bias).for_each(|(row, &b)| row.fill(b)),
        None => y.fill(0.0),
    }
    pad_image(g, pad, x, &mut chunk.padded);

    let (padded, taps) = (&chunk.padded, &pad.offsets[..k]);
    let group_len = (g.c / packed.len()) * pad.hp * pad.wp;
    for (gi, w_g) in packed.iter().enumerate() {
        let y_g = &mut y[gi * m * p..(gi + 1) * m * p];
        let dims = (g.oh(), g.ow());
        conv_rows_split(w_g, padded, gi * group_len, pad, taps, dims, y_g, add(relu));
    }
}

/// Backward for one image: adds into the chunk's dweight and dbias and, when
/// asked, overwrites `dx [c, h, w]`.
fn conv_image_backward(
    plan: &Plan,
    packed_dx: &[PackedA],
    x: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    chunk: &mut Chunk,
) {
    let (g, GroupDims { groups, m, k, p }) = (&plan.g, plan.dims);

    // dbias[o] += Σ_p dy[o, p].
    for (db, row) in chunk.dbias.iter_mut().zip(dy.chunks(p)) {
        *db += sum(row);
    }

    // Direct: dweight_gᵀ [k, m] += cols_g · dy_gᵀ, reading the unfolded image
    // through the tap offsets of the padded image.
    if let Some(pad) = &plan.forward {
        pad_image(g, pad, x, &mut chunk.padded);
        let out = groups * m;
        transpose(dy, (out, p), &mut chunk.dyt, out);
        let group_len = (g.c / groups) * pad.hp * pad.wp;
        for gi in 0..groups {
            let (offsets, dims) = (&pad.offsets[..k], (g.oh(), g.ow()));
            let dyt = &chunk.dyt[gi * m..];
            let dwt_g = &mut chunk.dweight[gi * k * m..(gi + 1) * k * m];
            let base = gi * group_len;
            conv_weight_grad(
                &chunk.padded,
                base,
                pad,
                offsets,
                dims,
                dyt,
                (m, out),
                dwt_g,
                m,
                true,
            );
        }
    } else {
        // dweight_g [m, k] += dy_g [m, p] · cols_gᵀ, with colsᵀ unfolded
        // directly (im2row) and read in place.
        weight_grad_unfolded(plan, x, dy, chunk);
    }
    let Some(dx) = dx else { return };

    // Direct: dx_g = flip(w_g)ᵀ ⊛ dy_g over dy padded by k − 1 − p.
    if let Some((gd, pad)) = &plan.backward {
        pad_image(gd, pad, dy, &mut chunk.padded_dy);
        let (cg, taps) = (g.c / groups, m * g.kh * g.kw);
        let (hw, group_len) = (g.h * g.w, m * pad.hp * pad.wp);
        for (gi, wf_g) in packed_dx.iter().enumerate() {
            let dx_g = &mut dx[gi * cg * hw..(gi + 1) * cg * hw];
            let offsets = &pad.offsets[..taps];
            let padded = &chunk.padded_dy;
            let dims = (g.h, g.w);
            conv_rows(wf_g, padded, gi * group_len, pad, offsets, dims, dx_g, Store::Write);
        }
        return;
    }

    // Unfolded: dcols_g [k, p] = w_gᵀ · dy_g, folded back onto dx.
    let identity = g.is_identity();
    let dcols = if identity { &mut *dx } else { &mut chunk.cols[..] };
    for (gi, wt_g) in packed_dx.iter().enumerate() {
        let dy_g = &dy[gi * m * p..(gi + 1) * m * p];
        gemm_packed(wt_g, dy_g, p, p, &mut dcols[gi * k * p..(gi + 1) * k * p], p, false);
    }
    if !identity {
        dx.fill(0.0);
        col2im(g, &chunk.cols, dx);
    }
}

/// dweight for one image by unfolding: `dweight_g [m, k] += dy_g · cols_gᵀ`
/// with `colsᵀ` written by im2row and read in place.
fn weight_grad_unfolded(plan: &Plan, x: &[f32], dy: &[f32], chunk: &mut Chunk) {
    let (g, GroupDims { groups, m, k, p }) = (&plan.g, plan.dims);
    let rows = &mut chunk.cols;
    im2row(g, x, rows);
    for gi in 0..groups {
        chunk.packed_dy.pack(&dy[gi * m * p..(gi + 1) * m * p], m, p, false);
        let dw_g = &mut chunk.dweight[gi * m * k..(gi + 1) * m * k];
        gemm_packed(&chunk.packed_dy, &rows[gi * k..], groups * k, k, dw_g, k, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_weight_is_packed_again() {
        let config = Conv2dConfig {
            in_channels: 2,
            out_channels: 7,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            groups: 1,
            bias: true,
        };
        let mut layer = Conv2d::new(config, &mut Rng::new(0, 1));
        let x = Tensor::from_vec(&[1, 2, 5, 5], (0..50).map(|i| i as f32 * 0.1).collect()).unwrap();
        let mut y = Tensor::zeros(&layer.output_shape(x.shape()));
        layer.forward(&x, &mut y, Mode::Eval);
        let before = y.data().to_vec();

        // Through params_mut only, as an optimiser or a model file does.
        layer.params_mut()[0].value.data_mut().fill(0.0);
        layer.forward(&x, &mut y, Mode::Eval);
        let bias = layer.params()[1].value.data().to_vec();
        let want: Vec<f32> = bias.iter().flat_map(|&b| [b; 25]).collect();
        assert_ne!(before, want);
        assert_eq!(y.data(), &want[..]);
    }
}
