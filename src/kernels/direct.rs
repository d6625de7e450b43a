//! Stride-1 convolution without unfolding the image ("implicit GEMM"): the
//! output `y[o, oy, ox..ox+16]` is `Σ_kk w[o, kk] · xp[off(kk) + oy·wp + ox..]`,
//! where `xp` is the zero-padded image and `off(kk)` the offset of kernel tap
//! `kk = (ci, ki, kj)` in it. Sixteen consecutive outputs of a row read
//! sixteen consecutive padded inputs, so the right operand of the product is
//! loaded straight from the (small, cache-resident) image and no `c·kh·kw ×
//! oh·ow` matrix is ever written.
//!
//! The same kernel gives the input gradient of a stride-1 convolution: it is
//! the convolution of `dy`, padded by `k − 1 − p`, with the weights flipped
//! and transposed.

use std::ops::Range;

use rayon::prelude::*;

use super::packed::{PackedA, MR};
use super::simd::{level, Level};
use super::Window;

/// Lanes of slack after a padded image: the last tile of a row may read up to
/// this many values past the row's end (into the next row or the slack);
/// those lanes only feed outputs that are never stored. Four AVX-512 vectors.
pub const SLACK: usize = 64;

/// Taps per pass of [`conv_rows`]: 96 taps touch at most 192 cache lines
/// (12 KiB) of the image, which stay in L1 while every panel of weights runs.
const TAPS_PER_BLOCK: usize = 1024;

/// How [`conv_rows`] puts its sums into `y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// `y = sums`.
    Write,
    /// `y += sums`, onto a bias already there.
    Add,
    /// `y = relu(y + sums)`: onto the bias, then the ReLU that follows the
    /// layer, applied as the sums are stored, so no pass over `y` is left.
    AddRelu,
}

/// Vectors per row of a convolution tile, at most.
const MAX_VECTORS: usize = 4;

/// Output runs a tile may split into.
const MAX_RUNS: usize = 16;

/// A run of a tile's lanes that land on consecutive outputs: lanes
/// `lo..hi` go to `y[dst + lane]` (`dst` may be negative; lanes outside
/// the run are never written).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Run {
    lo: usize,
    hi: usize,
    dst: isize,
}

/// How a convolution's output positions are cut into tiles. Output `(oy,
/// ox)` reads the padded image from `oy·wp + ox` on, so the positions can be
/// numbered `q = oy·wp + ox` and read as one long row: tiles may then run
/// across image rows ("wide"), computing the `wp − ow` columns between rows
/// for nothing. Or each tile stays within a row ("rows"), wasting the
/// lanes of its last, partial vector. The layout that wastes fewer lanes
/// is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    oh: usize,
    ow: usize,
    wp: usize,
    /// Positions per tile, at most.
    tile: usize,
    /// Tiles run across rows.
    wide: bool,
}

impl Layout {
    /// The layout for vectors of `lanes`: tiles of up to four AVX-512
    /// vectors (24 of its 32 registers accumulate) or two AVX2 ones (16
    /// registers).
    fn new(lanes: usize, oh: usize, ow: usize, wp: usize) -> Layout {
        let widest = if lanes >= 16 { MAX_VECTORS } else { 2 } * lanes;
        Layout::choose(oh, ow, wp, widest, lanes)
    }

    fn choose(oh: usize, ow: usize, wp: usize, widest: usize, lanes: usize) -> Layout {
        // Lanes spent per output row: whole vectors within a row, or the
        // padded row's width across rows.
        let by_rows = ow / widest * widest + (ow % widest).div_ceil(lanes) * lanes;
        let few_runs = widest / wp.max(1) + 2 <= MAX_RUNS;
        let wide = few_runs && oh > 1 && wp < by_rows;
        Layout { oh, ow, wp, tile: widest, wide }
    }

    /// `(q0, width)` of every tile, in order.
    fn tiles(self) -> impl Iterator<Item = (usize, usize)> {
        let Layout { oh, ow, wp, tile, wide } = self;
        let total = if oh == 0 || ow == 0 { 0 } else { (oh - 1) * wp + ow };
        let across = (0..if wide { total } else { 0 }).step_by(tile);
        let across = across.map(move |q0| (q0, tile.min(total - q0)));
        let within = (0..if wide { 0 } else { oh }).flat_map(move |oy| {
            (0..ow).step_by(tile).map(move |j0| (oy * wp + j0, tile.min(ow - j0)))
        });
        across.chain(within)
    }

    /// Writes the output runs of the tile at `q0` of `width` positions into
    /// `runs`; returns how many.
    fn runs(self, q0: usize, width: usize, runs: &mut [Run; MAX_RUNS]) -> usize {
        let (wp, ow) = (self.wp, self.ow);
        let (mut q, end, mut count) = (q0, q0 + width, 0);
        while q < end {
            let (oy, ox) = (q / wp, q % wp);
            if ox >= ow {
                q = (oy + 1) * wp;
                continue;
            }
            let stop = end.min(oy * wp + ow);
            let dst = (oy * ow + ox) as isize - (q - q0) as isize;
            runs[count] = Run { lo: q - q0, hi: stop - q0, dst };
            count += 1;
            q = stop;
        }
        count
    }
}

/// Geometry of a padded image and its tap offsets.
#[derive(Clone, Debug, Default)]
pub struct Padded {
    /// Padded height.
    pub hp: usize,
    /// Padded width.
    pub wp: usize,
    /// Offset of each kernel tap `(ci, ki, kj)` in the padded image, in
    /// `im2col` row order.
    pub offsets: Vec<usize>,
}

impl Padded {
    /// Offsets for `g` (stride must be 1).
    pub fn new(g: &Window) -> Padded {
        let (hp, wp) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
        let mut offsets = Vec::with_capacity(g.col_rows());
        for ci in 0..g.c {
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    offsets.push((ci * hp + ki) * wp + kj);
                }
            }
        }
        Padded { hp, wp, offsets }
    }

    /// Length of a padded image buffer, slack included.
    pub fn len(&self, channels: usize) -> usize {
        channels * self.hp * self.wp + SLACK
    }

    /// Whether the padded image is empty (no channels or no pixels).
    pub fn is_empty(&self) -> bool {
        self.hp * self.wp == 0
    }
}

/// Copies `x [c, h, w]` into `xp [c, h + 2ph, w + 2pw]` with zero borders
/// (and zero slack after it).
///
/// # Panics
///
/// When `xp` is shorter than [`Padded::len`].
pub fn pad_image(g: &Window, pad: &Padded, x: &[f32], xp: &mut [f32]) {
    let (hp, wp) = (pad.hp, pad.wp);
    assert!(xp.len() >= pad.len(g.c), "pad_image: buffer too short");
    xp.iter_mut().for_each(|v| *v = 0.0);
    for ci in 0..g.c {
        for iy in 0..g.h {
            let src = &x[(ci * g.h + iy) * g.w..(ci * g.h + iy + 1) * g.w];
            let at = (ci * hp + iy + g.ph) * wp + g.pw;
            xp[at..at + g.w].iter_mut().zip(src).for_each(|(d, &s)| *d = s);
        }
    }
}

/// `y[o, oy, ox] (+)= Σ_kk w[o, kk] · xp[base + offsets[kk] + oy·wp + ox]` for
/// every output channel `o` of the packed `w` (`[m, k]`, `k` = number of
/// offsets) and every output position of `oh × ow`. `y` is `[m, oh·ow]`.
///
/// # Panics
///
/// When a buffer is too short for the geometry, or the CPU lacks AVX2 and
/// FMA (callers check [`available`] first).
#[allow(clippy::too_many_arguments)]
pub fn conv_rows(
    w: &PackedA,
    xp: &[f32],
    base: usize,
    pad: &Padded,
    offsets: &[usize],
    dims: (usize, usize),
    y: &mut [f32],
    store: Store,
) {
    check_conv_rows(w, xp, base, pad, offsets, dims, y);
    let panels = 0..w.rows().div_ceil(MR);
    // SAFETY: checked above: y holds every output channel of the image.
    unsafe {
        conv_rows_at(
            level(),
            w,
            panels,
            0..usize::MAX,
            xp,
            base,
            pad,
            offsets,
            dims,
            y.as_mut_ptr(),
            store,
        )
    };
}

/// [`conv_rows`] with the output positions of the image split over the
/// rayon pool: each thread computes every output channel of its share of
/// the tiles, so the shares are even whatever the channel count. For the
/// latency of a single image.
///
/// # Panics
///
/// As [`conv_rows`].
#[allow(clippy::too_many_arguments)]
pub fn conv_rows_split(
    w: &PackedA,
    xp: &[f32],
    base: usize,
    pad: &Padded,
    offsets: &[usize],
    dims: (usize, usize),
    y: &mut [f32],
    store: Store,
) {
    check_conv_rows(w, xp, base, pad, offsets, dims, y);
    let level = level();
    let tiles = Layout::new(level.lanes(), dims.0, dims.1, pad.wp).tiles().count();
    let parts = rayon::current_num_threads().min(tiles).max(1);
    let per_part = tiles.div_ceil(parts);
    let panels = 0..w.rows().div_ceil(MR);
    let y = SharedOut(y.as_mut_ptr());
    (0..parts).into_par_iter().for_each(|part| {
        let tiles = part * per_part..((part + 1) * per_part).min(tiles);
        // SAFETY: checked above; the parts' tiles are disjoint, so no two
        // threads write the same output.
        unsafe {
            let y = y.get();
            conv_rows_at(level, w, panels.clone(), tiles, xp, base, pad, offsets, dims, y, store)
        };
    });
}

/// The output of [`conv_rows_split`], shared by threads that write disjoint
/// parts of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: each thread writes only the outputs of its own tiles.
unsafe impl Send for SharedOut {}
// SAFETY: as for Send; nothing reads through the pointer.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so closures capture the whole wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// The checks of [`conv_rows`].
fn check_conv_rows(
    w: &PackedA,
    xp: &[f32],
    base: usize,
    pad: &Padded,
    offsets: &[usize],
    (oh, ow): (usize, usize),
    y: &[f32],
) {
    assert_eq!(w.depth(), offsets.len(), "conv_rows: one weight column per tap");
    assert!(y.len() >= w.rows() * oh * ow, "conv_rows: y too short");
    // The last tile of a row reads up to SLACK − 1 lanes past its last output.
    let reach = offsets.iter().max().map_or(0, |&o| o + (oh.max(1) - 1) * pad.wp + ow + SLACK - 1);
    assert!(xp.len() >= base + reach, "conv_rows: padded image too short");
    assert!(level() >= Level::Avx2, "conv_rows needs AVX2 and FMA");
}

/// [`conv_rows`] for the output channels of `panels` and the tiles of
/// `tiles` (in the order of the level's layout) at a given level (tests run
/// every level the CPU has).
///
/// # Safety
///
/// The caller has made [`conv_rows`]'s checks; `y` is valid for the output
/// channels of `panels` (it points at the first of them), and no other
/// thread writes the outputs of these tiles.
#[allow(clippy::too_many_arguments)]
unsafe fn conv_rows_at(
    level: Level,
    w: &PackedA,
    panels: Range<usize>,
    tiles: Range<usize>,
    xp: &[f32],
    base: usize,
    pad: &Padded,
    offsets: &[usize],
    (oh, ow): (usize, usize),
    y: *mut f32,
    store: Store,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let (xp, wp) = (xp.as_ptr().add(base), pad.wp);
        match level {
            Level::Avx512 => {
                wide::conv_rows_avx512(w, panels, tiles, xp, wp, offsets, oh, ow, y, store)
            }
            Level::Avx2 => {
                wide::conv_rows_avx2(w, panels, tiles, xp, wp, offsets, oh, ow, y, store)
            }
            Level::Portable => unreachable!("the direct kernels need AVX2"),
        }
    }
}

/// The weight gradient of a stride-1 convolution for one image, transposed:
/// `dwt[kk, o] (+)= Σ_(oy, ox) xp[base + offsets[kk] + oy·wp + ox] · dyt[oy·ow + ox, o]`
/// for every tap `kk` and output channel `o < m`. `dyt` is `dy` transposed,
/// `[oh·ow, m]` at row stride `ldb`, readable for `SLACK − 1` values past its
/// last channel (its buffer ends with [`SLACK`]); `dwt` is `[taps, m]` at row
/// stride `ldc`.
///
/// The unfolded image is read through the tap offsets, so, as in
/// [`conv_rows`], no unfolding is written.
///
/// # Panics
///
/// When a buffer is too short, or the CPU lacks AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
pub fn conv_weight_grad(
    xp: &[f32],
    base: usize,
    pad: &Padded,
    offsets: &[usize],
    (oh, ow): (usize, usize),
    dyt: &[f32],
    (m, ldb): (usize, usize),
    dwt: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let reach = offsets.iter().max().map_or(0, |&o| o + (oh.max(1) - 1) * pad.wp + ow);
    assert!(xp.len() >= base + reach, "conv_weight_grad: padded image too short");
    // Tiles read whole vectors from each row: up to SLACK − 1 past channel m − 1.
    let dyt_reach = (oh * ow).saturating_sub(1) * ldb + m + SLACK - 1;
    assert!(ldb >= m && dyt.len() >= dyt_reach, "conv_weight_grad: dyt too short");
    assert!(ldc >= m && dwt.len() >= offsets.len().saturating_sub(1) * ldc + m, "dwt too short");
    let level = level();
    assert!(level >= Level::Avx2, "conv_weight_grad needs AVX2 and FMA");
    let (xp, wp) = (&xp[base..], pad.wp);
    conv_weight_grad_at(level, xp, wp, offsets, (oh, ow), dyt, (m, ldb), dwt, ldc, accumulate);
}

/// [`conv_weight_grad`] at a given level, after the caller's checks.
#[allow(clippy::too_many_arguments)]
fn conv_weight_grad_at(
    level: Level,
    xp: &[f32],
    wp: usize,
    offsets: &[usize],
    (oh, ow): (usize, usize),
    dyt: &[f32],
    (m, ldb): (usize, usize),
    dwt: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the level is one the CPU has; the caller's asserts bound every
    // read of xp and dyt (vector reads past a row of dyt stay within its
    // slack) and every write of dwt.
    unsafe {
        let xp = xp.as_ptr();
        match level {
            Level::Avx512 => wide::conv_weight_grad_avx512(
                xp, wp, offsets, oh, ow, dyt, m, ldb, dwt, ldc, accumulate,
            ),
            Level::Avx2 => wide::conv_weight_grad_avx2(
                xp, wp, offsets, oh, ow, dyt, m, ldb, dwt, ldc, accumulate,
            ),
            Level::Portable => unreachable!("the direct kernels need AVX2"),
        }
    }
}

/// Whether [`conv_rows`] can run on this CPU.
pub fn available() -> bool {
    level() >= Level::Avx2
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use std::ops::Range;

    use super::super::simd::{per_width, put_tile, Simd};
    use super::{Layout, PackedA, Run, Store, MAX_RUNS, MR, TAPS_PER_BLOCK};

    per_width!(conv_rows, conv_rows_avx2, conv_rows_avx512, (
        w: &PackedA,
        panels: Range<usize>,
        tiles: Range<usize>,
        xp: *const f32,
        wp: usize,
        offsets: &[usize],
        oh: usize,
        ow: usize,
        y: *mut f32,
        store: Store
    ));

    per_width!(conv_weight_grad, conv_weight_grad_avx2, conv_weight_grad_avx512, (
        xp: *const f32,
        wp: usize,
        offsets: &[usize],
        oh: usize,
        ow: usize,
        dyt: &[f32],
        m: usize,
        ldb: usize,
        dwt: &mut [f32],
        ldc: usize,
        accumulate: bool
    ));

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn conv_rows<S: Simd>(
        w: &PackedA,
        panels: Range<usize>,
        tiles: Range<usize>,
        xp: *const f32,
        wp: usize,
        offsets: &[usize],
        oh: usize,
        ow: usize,
        y: *mut f32,
        store: Store,
    ) {
        let (m, k) = (w.rows(), w.depth());
        let p = oh * ow;
        let layout = Layout::new(S::LANES, oh, ow, wp);
        let mut runs = [Run::default(); MAX_RUNS];
        for (q0, width) in layout.tiles().skip(tiles.start).take(tiles.len()) {
            let count = layout.runs(q0, width, &mut runs);
            let runs = &runs[..count];
            let src = xp.add(q0);

            // Taps in blocks, every panel over one block before the next:
            // a block's image segments then stay in L1 across all output
            // channels.
            for k0 in (0..k).step_by(TAPS_PER_BLOCK) {
                let taps = &offsets[k0..(k0 + TAPS_PER_BLOCK).min(k)];
                // Earlier blocks' sums are in y; the ReLU waits for the last.
                let accumulate = store != Store::Write || k0 > 0;
                let relu = store == Store::AddRelu && k0 + TAPS_PER_BLOCK >= k;
                let mut panel = panels.start;
                while panel < panels.end {
                    let a = w.panel(panel).as_ptr().add(k0 * MR);
                    let c = y.add((panel - panels.start) * MR * p);
                    let rows = m - panel * MR;
                    let pair = panel + 1 < panels.end;
                    let out = Out { c, ldc: p, rows, runs, accumulate, relu };
                    // Enough accumulators to cover the FMA latency: two
                    // panels when the tile is one or two vectors wide.
                    panel += match (width.div_ceil(S::LANES), pair) {
                        (1, true) => tile::<S, 2, 1>(a, k, src, taps, out),
                        (1, false) => tile::<S, 1, 1>(a, k, src, taps, out),
                        (2, true) if S::LANES >= 16 => tile::<S, 2, 2>(a, k, src, taps, out),
                        (2, _) => tile::<S, 1, 2>(a, k, src, taps, out),
                        (3, _) => tile::<S, 1, 3>(a, k, src, taps, out),
                        _ => tile::<S, 1, 4>(a, k, src, taps, out),
                    };
                }
            }
        }
    }

    /// Where a tile's sums go: rows of `c` `ldc` apart, at most `rows` of
    /// them, each split into `runs`.
    #[derive(Clone, Copy)]
    struct Out<'a> {
        c: *mut f32,
        ldc: usize,
        rows: usize,
        runs: &'a [Run],
        accumulate: bool,
        relu: bool,
    }

    /// A tile of `P` panels (`P·MR` output channels) by `V` vectors of
    /// positions; returns the panels it covered. `a` is the first panel at
    /// the block's first tap; panels are `MR · k` apart.
    #[inline(always)]
    unsafe fn tile<S: Simd, const P: usize, const V: usize>(
        a: *const f32,
        k: usize,
        src: *const f32,
        offsets: &[usize],
        out: Out,
    ) -> usize {
        let mut acc = [[[S::zero(); V]; MR]; P];
        for (kk, &offset) in offsets.iter().enumerate() {
            // Lanes past the tile read the slack or the next row; their sums
            // are never stored.
            let b_row = src.add(offset);
            let b: [S::V; V] = std::array::from_fn(|v| S::load(b_row.add(v * S::LANES)));
            for (panel, acc_p) in acc.iter_mut().enumerate() {
                let a_col = a.add(panel * MR * k + kk * MR);
                for (r, acc_r) in acc_p.iter_mut().enumerate() {
                    let av = S::broadcast(a_col.add(r));
                    for (acc_v, &b_v) in acc_r.iter_mut().zip(&b) {
                        *acc_v = S::fmadd(av, b_v, *acc_v);
                    }
                }
            }
        }

        // Each row's lanes go to their output runs.
        for (panel, acc_p) in acc.iter().enumerate() {
            for (r, acc_r) in acc_p.iter().enumerate() {
                let row = panel * MR + r;
                if row >= out.rows {
                    break;
                }
                let c = out.c.add(row * out.ldc);
                for run in out.runs {
                    for (v, &value) in acc_r.iter().enumerate() {
                        let (lo, hi) = (v * S::LANES, (v + 1) * S::LANES);
                        if run.hi <= lo || run.lo >= hi {
                            continue;
                        }
                        // Lane l of vector v lands at c + dst + lo + l; lanes
                        // outside the run are masked and never touched.
                        let at = c.wrapping_offset(run.dst + lo as isize);
                        let (from, to) = (run.lo.max(lo) - lo, run.hi.min(hi) - lo);
                        S::put_range(at, value, (from, to), out.accumulate, out.relu);
                    }
                }
            }
        }
        P
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn conv_weight_grad<S: Simd>(
        xp: *const f32,
        wp: usize,
        offsets: &[usize],
        oh: usize,
        ow: usize,
        dyt: &[f32],
        m: usize,
        ldb: usize,
        dwt: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) {
        let taps = offsets.len();
        let nr = 2 * S::LANES;
        for o0 in (0..m).step_by(nr) {
            let width = nr.min(m - o0);
            // Twelve accumulators at least, to cover the FMA latency.
            for t0 in (0..taps).step_by(2 * MR) {
                let rows = (2 * MR).min(taps - t0);
                let b = dyt.as_ptr().add(o0);
                let c = dwt.as_mut_ptr().add(t0 * ldc + o0);
                let at = |r: usize| xp.add(offsets[t0 + r.min(rows - 1)]);
                let geometry = (wp, oh, ow, ldb, ldc);
                if width > S::LANES && S::LANES >= 16 {
                    // Thirty-two registers: 2·MR taps by two vectors fit.
                    let srcs: [*const f32; 2 * MR] = std::array::from_fn(at);
                    dw_tile::<S, { 2 * MR }, 2>(srcs, b, c, geometry, rows, width, accumulate);
                } else if width > S::LANES {
                    for half in 0..rows.div_ceil(MR) {
                        let srcs: [*const f32; MR] = std::array::from_fn(|r| at(half * MR + r));
                        let live = (rows - half * MR).min(MR);
                        let c = c.add(half * MR * ldc);
                        dw_tile::<S, MR, 2>(srcs, b, c, geometry, live, width, accumulate);
                    }
                } else {
                    let srcs: [*const f32; 2 * MR] = std::array::from_fn(at);
                    dw_tile::<S, { 2 * MR }, 1>(srcs, b, c, geometry, rows, width, accumulate);
                }
            }
        }
    }

    /// `R` taps by `width ≤ V·LANES` output channels of the transposed
    /// weight gradient, summed over every output position. Tap `r` reads the
    /// image at `srcs[r]`; rows past `rows` repeat a valid tap and are not
    /// stored.
    #[inline(always)]
    unsafe fn dw_tile<S: Simd, const R: usize, const V: usize>(
        srcs: [*const f32; R],
        dyt: *const f32,
        c: *mut f32,
        (wp, oh, ow, ldb, ldc): (usize, usize, usize, usize, usize),
        rows: usize,
        width: usize,
        accumulate: bool,
    ) {
        let mut acc = [[S::zero(); V]; R];
        for oy in 0..oh {
            for ox in 0..ow {
                // Lanes past `width` read the next row or the slack.
                let b_row = dyt.add((oy * ow + ox) * ldb);
                let b: [S::V; V] = std::array::from_fn(|v| S::load(b_row.add(v * S::LANES)));
                let at = oy * wp + ox;
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let av = S::broadcast(srcs[r].add(at));
                    for v in 0..V {
                        acc_r[v] = S::fmadd(av, b[v], acc_r[v]);
                    }
                }
            }
        }
        put_tile::<S, V>(&acc, c, ldc, rows, width, accumulate);
    }
}

#[cfg(test)]
mod tests {
    use super::super::simd::levels;
    use super::super::{im2col, Gemm};
    use super::*;

    /// The levels the direct kernels run at on this CPU.
    fn direct_levels() -> Vec<Level> {
        levels().into_iter().filter(|&l| l >= Level::Avx2).collect()
    }

    #[test]
    fn weight_gradient_matches_im2col_and_a_matrix_product() {
        let shapes = [
            (1, 5, 5, 3, 1, 4),
            (3, 7, 6, 3, 0, 17),
            (2, 14, 14, 5, 2, 32),
            (1, 28, 28, 3, 0, 16),
            (5, 9, 8, 3, 1, 64),
            (2, 6, 7, 3, 1, 45),
        ];
        for (c, h, w, k, p, m) in shapes {
            let g = Window { c, h, w, kh: k, kw: k, sh: 1, sw: 1, ph: p, pw: p };
            let (kk, pp) = (g.col_rows(), g.col_cols());
            let x: Vec<f32> = (0..c * h * w).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
            let dy: Vec<f32> = (0..m * pp).map(|i| ((i * 3) % 5) as f32 - 2.0).collect();

            // dwᵀ [kk, m] = cols [kk, pp] · dyᵀ [pp, m].
            let mut cols = vec![0.0; kk * pp];
            im2col(&g, &x, &mut cols);
            let mut want = vec![0.0; kk * m];
            Gemm::new(kk, m, pp).tb().run(&cols, &dy, &mut want);

            let pad = Padded::new(&g);
            let mut xp = vec![0.0; pad.len(c)];
            pad_image(&g, &pad, &x, &mut xp);
            let mut dyt = vec![0.0; pp * m + SLACK];
            for o in 0..m {
                for q in 0..pp {
                    dyt[q * m + o] = dy[o * pp + q];
                }
            }
            let plus_one: Vec<f32> = want.iter().map(|v| v + 1.0).collect();
            let dims = (g.oh(), g.ow());
            for level in direct_levels() {
                let mut got = vec![1.0; kk * m];
                let (offsets, wp) = (&pad.offsets, pad.wp);
                conv_weight_grad_at(level, &xp, wp, offsets, dims, &dyt, (m, m), &mut got, m, true);
                assert_eq!(got, plus_one, "{level:?} {g:?}");
            }
        }
    }

    #[test]
    fn the_fused_relu_is_the_scalar_relu_nans_included() {
        let g = Window { c: 2, h: 9, w: 11, kh: 3, kw: 3, sh: 1, sw: 1, ph: 1, pw: 1 };
        let m = 7;
        let mut x: Vec<f32> = (0..2 * 9 * 11).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        x[40] = f32::NAN;
        let weight: Vec<f32> = (0..m * g.col_rows()).map(|i| ((i * 3) % 5) as f32 - 2.0).collect();
        let pad = Padded::new(&g);
        let mut xp = vec![0.0; pad.len(g.c)];
        pad_image(&g, &pad, &x, &mut xp);
        let mut packed = PackedA::default();
        packed.pack(&weight, m, g.col_rows(), false);
        let (dims, offsets) = ((g.oh(), g.ow()), &pad.offsets);
        let bias: Vec<f32> = (0..m * 99).map(|i| (i / 99) as f32 - 3.0).collect();

        let mut want = bias.clone();
        conv_rows(&packed, &xp, 0, &pad, offsets, dims, &mut want, Store::Add);
        want.iter_mut().for_each(|v| *v = if *v < 0.0 { 0.0 } else { *v });
        let mut got = bias.clone();
        conv_rows(&packed, &xp, 0, &pad, offsets, dims, &mut got, Store::AddRelu);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert!(want.iter().any(|v| v.is_nan()) && want.contains(&0.0));
        assert_eq!(bits(&got), bits(&want));
    }

    #[test]
    fn split_over_threads_matches_one_thread() {
        let g = Window { c: 3, h: 14, w: 14, kh: 5, kw: 5, sh: 1, sw: 1, ph: 2, pw: 2 };
        let m = 16;
        let x: Vec<f32> = (0..3 * 14 * 14).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let weight: Vec<f32> = (0..m * g.col_rows()).map(|i| ((i * 3) % 5) as f32 - 2.0).collect();
        let pad = Padded::new(&g);
        let mut xp = vec![0.0; pad.len(g.c)];
        pad_image(&g, &pad, &x, &mut xp);
        let mut packed = PackedA::default();
        packed.pack(&weight, m, g.col_rows(), false);
        let dims = (g.oh(), g.ow());
        let mut want = vec![1.0; m * 14 * 14];
        conv_rows(&packed, &xp, 0, &pad, &pad.offsets, dims, &mut want, Store::AddRelu);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let mut got = vec![1.0; m * 14 * 14];
        let offsets = &pad.offsets;
        pool.install(|| {
            conv_rows_split(&packed, &xp, 0, &pad, offsets, dims, &mut got, Store::AddRelu)
        });
        assert_eq!(got, want);
    }

    #[test]
    fn wide_tiles_split_into_runs_of_one_output_row() {
        // Outputs 3 wide in rows 5 apart: a 16-position tile from q = 4.
        let layout = Layout { oh: 4, ow: 3, wp: 5, tile: 16, wide: true };
        let mut runs = [Run::default(); MAX_RUNS];
        let count = layout.runs(4, 12, &mut runs);
        let want = [
            Run { lo: 1, hi: 4, dst: 2 },    // q 5..8 -> y 3..6
            Run { lo: 6, hi: 9, dst: 0 },    // q 10..13 -> y 6..9
            Run { lo: 11, hi: 12, dst: -2 }, // q 15 -> y 9
        ];
        assert_eq!(&runs[..count], &want);
        let tiles: Vec<_> = layout.tiles().collect();
        assert_eq!(tiles, vec![(0, 16), (16, 2)]);
        assert!(!Layout::choose(14, 14, 18, 64, 16).wide, "14 of 18 fits one vector");
        assert!(Layout::choose(24, 24, 26, 64, 16).wide, "24 of 26 would waste 8 of 32");
    }

    #[test]
    fn matches_im2col_and_a_matrix_product() {
        let shapes = [
            (1, 5, 5, 3, 1, 4),
            (3, 7, 6, 3, 0, 7),
            (2, 14, 14, 5, 2, 13),
            (4, 9, 30, 3, 1, 6),
            (2, 26, 26, 3, 0, 12),
            (1, 9, 40, 3, 0, 5),
            (1, 12, 9, 3, 0, 7),
            (2, 10, 10, 3, 1, 9),
            (3, 5, 70, 3, 1, 25),
            (1, 3, 3, 3, 0, 2),
        ];
        for (c, h, w, k, p, m) in shapes {
            let g = Window { c, h, w, kh: k, kw: k, sh: 1, sw: 1, ph: p, pw: p };
            let x: Vec<f32> = (0..c * h * w).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
            let weight: Vec<f32> =
                (0..m * g.col_rows()).map(|i| ((i * 3) % 5) as f32 - 2.0).collect();
            let (kk, pp) = (g.col_rows(), g.col_cols());

            let mut cols = vec![0.0; kk * pp];
            im2col(&g, &x, &mut cols);
            let mut want = vec![0.0; m * pp];
            Gemm::new(m, pp, kk).run(&weight, &cols, &mut want);

            let pad = Padded::new(&g);
            let mut xp = vec![f32::NAN; pad.len(c)];
            pad_image(&g, &pad, &x, &mut xp);
            let mut packed = PackedA::default();
            packed.pack(&weight, m, kk, false);
            let panels = 0..m.div_ceil(MR);
            let dims = (g.oh(), g.ow());
            for level in direct_levels() {
                let mut y = vec![f32::NAN; m * pp];
                let (offsets, all, out) = (&pad.offsets, 0..usize::MAX, y.as_mut_ptr());
                // SAFETY: y holds every channel, and the checks of conv_rows
                // hold for these shapes.
                unsafe {
                    let panels = panels.clone();
                    conv_rows_at(
                        level,
                        &packed,
                        panels,
                        all,
                        &xp,
                        0,
                        &pad,
                        offsets,
                        dims,
                        out,
                        Store::Write,
                    )
                };
                assert_eq!(y, want, "{level:?} {g:?}");
            }
        }
    }
}
