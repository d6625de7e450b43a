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

use super::packed::{PackedA, MR};
use super::Window;

/// Lanes of slack after a padded image: the last tile of a row may read up to
/// this many values past the row's end (into the next row or the slack);
/// those lanes only feed outputs that are never stored.
pub const SLACK: usize = 16;

/// Taps per pass of [`conv_rows`]: 96 taps touch at most 192 cache lines
/// (12 KiB) of the image, which stay in L1 while every panel of weights runs.
const TAPS_PER_BLOCK: usize = 1024;

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
    accumulate: bool,
) {
    let panels = 0..w.rows().div_ceil(MR);
    conv_rows_panels(w, panels, xp, base, pad, offsets, dims, y, accumulate);
}

/// [`conv_rows`] for the output channels of `panels` only (each [`MR`]
/// channels of `w`); `y` starts at the first of them. Lets threads split the
/// channels of one image.
///
/// # Panics
///
/// As [`conv_rows`].
#[allow(clippy::too_many_arguments)]
pub fn conv_rows_panels(
    w: &PackedA,
    panels: std::ops::Range<usize>,
    xp: &[f32],
    base: usize,
    pad: &Padded,
    offsets: &[usize],
    (oh, ow): (usize, usize),
    y: &mut [f32],
    accumulate: bool,
) {
    let channels = (panels.end * MR).min(w.rows()).saturating_sub(panels.start * MR);
    assert!(panels.end <= w.rows().div_ceil(MR), "conv_rows: panels beyond w");
    assert_eq!(w.depth(), offsets.len(), "conv_rows: one weight column per tap");
    assert!(y.len() >= channels * oh * ow, "conv_rows: y too short");
    // The last tile of a row reads up to 15 lanes past the row's last output.
    let reach = offsets.iter().max().map_or(0, |&o| o + (oh.max(1) - 1) * pad.wp + ow + 15);
    assert!(xp.len() >= base + reach, "conv_rows: padded image too short");
    assert!(available(), "conv_rows needs AVX2 and FMA");

    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX2 and FMA are present (asserted); every load reaches at most
    // `base + reach` (asserted within xp) and every store stays within y.
    unsafe {
        avx2::conv_rows(w, panels, xp.as_ptr().add(base), pad.wp, offsets, oh, ow, y, accumulate);
    }
}

/// The weight gradient of a stride-1 convolution for one image, transposed:
/// `dwt[kk, o] (+)= Σ_(oy, ox) xp[base + offsets[kk] + oy·wp + ox] · dyt[oy·ow + ox, o]`
/// for every tap `kk` and output channel `o < m`. `dyt` is `dy` transposed,
/// `[oh·ow, m]` at row stride `ldb`, readable for 15 values past its last
/// channel (its buffer ends with [`SLACK`]); `dwt` is `[taps, m]` at row
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
    // Tiles read 16 lanes from each row: up to 15 past channel m − 1.
    let dyt_reach = (oh * ow).saturating_sub(1) * ldb + m + 15;
    assert!(ldb >= m && dyt.len() >= dyt_reach, "conv_weight_grad: dyt too short");
    assert!(ldc >= m && dwt.len() >= offsets.len().saturating_sub(1) * ldc + m, "dwt too short");
    assert!(available(), "conv_weight_grad needs AVX2 and FMA");

    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX2 and FMA are present; the asserts bound every read of xp
    // and dyt (vector reads past a row of dyt stay within its slack) and
    // every write of dwt.
    unsafe {
        let xp = xp.as_ptr().add(base);
        avx2::conv_weight_grad(xp, pad.wp, offsets, oh, ow, dyt, m, ldb, dwt, ldc, accumulate);
    }
}

/// Whether [`conv_rows`] can run on this CPU.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{PackedA, MR, TAPS_PER_BLOCK};

    /// Store masks for a tile of `width` (1..=16) lanes.
    unsafe fn masks(width: usize) -> [__m256i; 2] {
        let lane = |i: i32| if (i as usize) < width { -1 } else { 0 };
        [
            _mm256_setr_epi32(
                lane(0),
                lane(1),
                lane(2),
                lane(3),
                lane(4),
                lane(5),
                lane(6),
                lane(7),
            ),
            _mm256_setr_epi32(
                lane(8),
                lane(9),
                lane(10),
                lane(11),
                lane(12),
                lane(13),
                lane(14),
                lane(15),
            ),
        ]
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn conv_rows(
        w: &PackedA,
        panels: std::ops::Range<usize>,
        xp: *const f32,
        wp: usize,
        offsets: &[usize],
        oh: usize,
        ow: usize,
        y: &mut [f32],
        accumulate: bool,
    ) {
        let (m, k) = (w.rows(), w.depth());
        let p = oh * ow;
        for oy in 0..oh {
            for j0 in (0..ow).step_by(16) {
                let width = 16.min(ow - j0);
                let masks = masks(width);
                let src = xp.add(oy * wp + j0);
                let dst = y.as_mut_ptr().add(oy * ow + j0);

                // Taps in blocks, every panel over one block before the next:
                // a block's image segments (two cache lines each, unaligned)
                // then stay in L1 across all output channels.
                for k0 in (0..k).step_by(TAPS_PER_BLOCK) {
                    let taps = &offsets[k0..(k0 + TAPS_PER_BLOCK).min(k)];
                    let add = accumulate || k0 > 0;
                    for panel in panels.clone() {
                        let rows = MR.min(m - panel * MR);
                        let a = w.panel(panel).as_ptr().add(k0 * MR);
                        let c = dst.add((panel - panels.start) * MR * p);
                        if width > 8 {
                            tile::<2>(a, src, taps, c, p, rows, &masks, width == 16, add);
                        } else {
                            tile::<1>(a, src, taps, c, p, rows, &masks, width == 8, add);
                        }
                    }
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn conv_weight_grad(
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
        for o0 in (0..m).step_by(16) {
            let width = 16.min(m - o0);
            let masks = masks(width);
            for t0 in (0..taps).step_by(MR) {
                let rows = MR.min(taps - t0);
                // Taps past the last repeat it; their sums are not stored.
                let srcs: [*const f32; MR] =
                    std::array::from_fn(|r| xp.add(offsets[t0 + r.min(rows - 1)]));
                let mut acc = [[_mm256_setzero_ps(); 2]; MR];
                for oy in 0..oh {
                    for ox in 0..ow {
                        let b_row = dyt.as_ptr().add((oy * ow + ox) * ldb + o0);
                        let b0 = _mm256_loadu_ps(b_row);
                        let b1 = _mm256_loadu_ps(b_row.add(8));
                        let at = oy * wp + ox;
                        for (r, acc_r) in acc.iter_mut().enumerate() {
                            let av = _mm256_broadcast_ss(&*srcs[r].add(at));
                            acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
                            acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
                        }
                    }
                }
                for (r, acc_r) in acc.iter().enumerate().take(rows) {
                    let out = dwt.as_mut_ptr().add((t0 + r) * ldc + o0);
                    let mask = |v: usize| (width < 16).then_some(masks[v]);
                    store(out, acc_r[0], mask(0), accumulate);
                    store(out.add(8), acc_r[1], mask(1), accumulate);
                }
            }
        }
    }

    /// Writes (or adds) eight lanes at `out`, or only those of `mask`. Masked
    /// stores are slow on some CPUs (microcoded on AMD's), so full lanes
    /// take plain ones.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store(out: *mut f32, value: __m256, mask: Option<__m256i>, accumulate: bool) {
        match mask {
            None if accumulate => _mm256_storeu_ps(out, _mm256_add_ps(value, _mm256_loadu_ps(out))),
            None => _mm256_storeu_ps(out, value),
            Some(mask) => {
                let value = if accumulate {
                    _mm256_add_ps(value, _mm256_maskload_ps(out, mask))
                } else {
                    value
                };
                _mm256_maskstore_ps(out, mask, value);
            }
        }
    }

    /// One `rows × (8·V)` tile: V = 2 for up to 16 outputs of a row, 1 for up
    /// to 8, so a short row does not pay for sixteen lanes.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const V: usize>(
        a: *const f32,
        src: *const f32,
        offsets: &[usize],
        c: *mut f32,
        ldc: usize,
        rows: usize,
        masks: &[__m256i; 2],
        full: bool,
        accumulate: bool,
    ) {
        let mut acc = [[_mm256_setzero_ps(); V]; MR];
        for (kk, &offset) in offsets.iter().enumerate() {
            let b_row = src.add(offset);
            let b: [__m256; V] = std::array::from_fn(|v| _mm256_loadu_ps(b_row.add(8 * v)));
            let a_col = a.add(kk * MR);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a_col.add(r));
                for v in 0..V {
                    acc_r[v] = _mm256_fmadd_ps(av, b[v], acc_r[v]);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate().take(rows) {
            let out = c.add(r * ldc);
            for v in 0..V {
                store(out.add(8 * v), acc_r[v], (!full).then_some(masks[v]), accumulate);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{im2col, Gemm};
    use super::*;

    #[test]
    fn weight_gradient_matches_im2col_and_a_matrix_product() {
        if !available() {
            return;
        }
        for (c, h, w, k, p, m) in [(1, 5, 5, 3, 1, 4), (3, 7, 6, 3, 0, 17), (2, 14, 14, 5, 2, 32)] {
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
            let mut got = vec![1.0; kk * m];
            let dims = (g.oh(), g.ow());
            conv_weight_grad(&xp, 0, &pad, &pad.offsets, dims, &dyt, (m, m), &mut got, m, true);
            let plus_one: Vec<f32> = want.iter().map(|v| v + 1.0).collect();
            assert_eq!(got, plus_one, "{g:?}");
        }
    }

    #[test]
    fn matches_im2col_and_a_matrix_product() {
        if !available() {
            return;
        }
        for (c, h, w, k, p, m) in
            [(1, 5, 5, 3, 1, 4), (3, 7, 6, 3, 0, 7), (2, 14, 14, 5, 2, 13), (4, 9, 30, 3, 1, 6)]
        {
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
            let mut y = vec![f32::NAN; m * pp];
            conv_rows(&packed, &xp, 0, &pad, &pad.offsets, (g.oh(), g.ow()), &mut y, false);
            assert_eq!(y, want, "{g:?}");
        }
    }
}
