//! Max-pooling loops over one `[h, w]` plane, with the argmax that backward
//! needs. Follows PyTorch: the window is scanned row by row, only a strictly
//! greater value (or a NaN) replaces the current maximum, and padding never
//! wins.

use super::simd::{level, Level};
use super::Window;

/// Max-pools one plane `x [h, w]` into `y [oh, ow]`; `argmax`, when given,
/// receives the flat index `iy·w + ix` of each output's maximum.
///
/// # Panics
///
/// When a slice is shorter than the geometry requires (`g.c` is ignored).
pub fn maxpool_plane(g: &Window, x: &[f32], y: &mut [f32], argmax: Option<&mut [u32]>) {
    let (oh, ow) = (g.oh(), g.ow());
    assert!(x.len() >= g.h * g.w && y.len() >= oh * ow, "maxpool: plane buffers too short");
    if (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw) == (2, 2, 2, 2, 0, 0) {
        maxpool_2x2(g, x, y, argmax);
    } else {
        maxpool_general(g, x, y, argmax);
    }
}

/// Any window, stride and padding.
fn maxpool_general(g: &Window, x: &[f32], y: &mut [f32], mut argmax: Option<&mut [u32]>) {
    let (oh, ow) = (g.oh(), g.ow());
    for oy in 0..oh {
        // Window rows clipped to the image: padding acts as −∞.
        let y0 = (oy * g.sh).saturating_sub(g.ph);
        let y1 = (oy * g.sh + g.kh - g.ph).min(g.h);
        for ox in 0..ow {
            let x0 = (ox * g.sw).saturating_sub(g.pw);
            let x1 = (ox * g.sw + g.kw - g.pw).min(g.w);
            let mut best = f32::NEG_INFINITY;
            let mut best_at = y0 * g.w + x0;
            for iy in y0..y1 {
                for ix in x0..x1 {
                    (best, best_at) = pick(best, best_at, x[iy * g.w + ix], iy * g.w + ix);
                }
            }
            y[oy * ow + ox] = best;
            if let Some(argmax) = argmax.as_deref_mut() {
                argmax[oy * ow + ox] = best_at as u32;
            }
        }
    }
}

/// The running maximum after seeing `v` at `at`: a strictly greater value or
/// a NaN takes over. Written as selects, not branches: on real images which
/// element wins is unpredictable, and a mispredicted branch per element cost
/// more than the comparison.
#[inline(always)]
fn pick(best: f32, best_at: usize, v: f32, at: usize) -> (f32, usize) {
    let take = v > best || v.is_nan();
    (if take { v } else { best }, if take { at } else { best_at })
}

/// The common 2×2, stride 2, unpadded case: four reads per output, in the
/// same scan order as the general loop, a vector of outputs at a time.
fn maxpool_2x2(g: &Window, x: &[f32], y: &mut [f32], argmax: Option<&mut [u32]>) {
    maxpool_2x2_at(level(), g, x, y, argmax);
}

/// [`maxpool_2x2`] at a given level (tests run every level the CPU has).
fn maxpool_2x2_at(
    level: Level,
    g: &Window,
    x: &[f32],
    y: &mut [f32],
    mut argmax: Option<&mut [u32]>,
) {
    let (oh, ow, w) = (g.oh(), g.ow(), g.w);
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx512 && ow > 0 {
        // SAFETY: AVX-512 is present; the kernel reads the `2·oh` rows of
        // `2·ow` values each below `x.len()` (checked by the caller) and
        // writes `oh·ow` outputs.
        unsafe { avx512::pool_2x2(x, w, (oh, ow), y, argmax) };
        return;
    }
    for oy in 0..oh {
        let top = &x[2 * oy * w..2 * oy * w + 2 * ow];
        let bottom = &x[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow];
        let row = Row2x2 { top, bottom, base: 2 * oy * w, w };
        let out = &mut y[oy * ow..(oy + 1) * ow];
        let idx = argmax.as_deref_mut().map(|a| &mut a[oy * ow..(oy + 1) * ow]);
        row.pool(level, out, idx);
    }
}

/// One output row of a 2×2 pooling: its two input rows and where they start
/// in the plane.
struct Row2x2<'a> {
    top: &'a [f32],
    bottom: &'a [f32],
    /// Flat index of `top[0]` in the plane.
    base: usize,
    /// Width of the input plane.
    w: usize,
}

impl Row2x2<'_> {
    fn pool(&self, level: Level, out: &mut [f32], mut idx: Option<&mut [u32]>) {
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if level >= Level::Avx2 {
            // SAFETY: AVX2 was just detected; the kernel reads `top` and
            // `bottom` only below `2 · out.len()`, their length.
            done = unsafe { avx2::pool_2x2(self, out, idx.as_deref_mut()) };
        }
        self.pool_scalar(done, out, idx);
    }

    /// Outputs `from..` one at a time.
    fn pool_scalar(&self, from: usize, out: &mut [f32], mut idx: Option<&mut [u32]>) {
        let (top, bottom, w) = (self.top, self.bottom, self.w);
        for ox in from..out.len() {
            let at = self.base + 2 * ox;
            let (mut best, mut best_at) = (top[2 * ox], at);
            (best, best_at) = pick(best, best_at, top[2 * ox + 1], at + 1);
            (best, best_at) = pick(best, best_at, bottom[2 * ox], at + w);
            (best, best_at) = pick(best, best_at, bottom[2 * ox + 1], at + w + 1);
            out[ox] = best;
            if let Some(idx) = idx.as_deref_mut() {
                idx[ox] = best_at as u32;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::Row2x2;

    /// The even and the odd lanes of the sixteen values `a`, `b`.
    #[target_feature(enable = "avx2")]
    unsafe fn deinterleave(a: __m256, b: __m256) -> (__m256, __m256) {
        // Within each 128-bit half first, then the 64-bit pairs in order.
        let even = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
        let odd = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
        let order = |v: __m256| {
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
        };
        (order(even), order(odd))
    }

    /// Pools the first multiple of eight outputs of `row` into `out` (and
    /// their flat argmax into `idx`); returns how many it did.
    ///
    /// # Safety
    ///
    /// AVX2 must be present, and `top` and `bottom` hold `2 · out.len()`
    /// values.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pool_2x2(row: &Row2x2, out: &mut [f32], idx: Option<&mut [u32]>) -> usize {
        let blocks = out.len() / 8;
        let even_lanes = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        let (right, below) = (_mm256_set1_epi32(1), _mm256_set1_epi32(row.w as i32));
        let idx = idx.map(|i| i.as_mut_ptr());
        for block in 0..blocks {
            let ox = 8 * block;
            let (t, b) = (row.top.as_ptr().add(2 * ox), row.bottom.as_ptr().add(2 * ox));
            let (top_l, top_r) = deinterleave(_mm256_loadu_ps(t), _mm256_loadu_ps(t.add(8)));
            let (bot_l, bot_r) = deinterleave(_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)));

            // The scan order of the scalar loop: a strictly greater value or
            // a NaN takes over, lane by lane.
            let at = _mm256_add_epi32(_mm256_set1_epi32((row.base + 2 * ox) as i32), even_lanes);
            let (mut best, mut best_at) = (top_l, _mm256_castsi256_ps(at));
            let candidates = [
                (top_r, _mm256_add_epi32(at, right)),
                (bot_l, _mm256_add_epi32(at, below)),
                (bot_r, _mm256_add_epi32(_mm256_add_epi32(at, below), right)),
            ];
            for (v, v_at) in candidates {
                let greater = _mm256_cmp_ps::<_CMP_GT_OQ>(v, best);
                let take = _mm256_or_ps(greater, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
                best = _mm256_blendv_ps(best, v, take);
                best_at = _mm256_blendv_ps(best_at, _mm256_castsi256_ps(v_at), take);
            }
            _mm256_storeu_ps(out.as_mut_ptr().add(ox), best);
            if let Some(idx) = idx {
                _mm256_storeu_si256(idx.add(ox).cast(), _mm256_castps_si256(best_at));
            }
        }
        8 * blocks
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Pools every row of a plane of width `w` into `y [oh, ow]` (and the
    /// flat argmax into `argmax`), sixteen outputs at a time; a row's last
    /// vector is masked, so no output is left to a scalar loop.
    ///
    /// # Safety
    ///
    /// AVX-512 F and VL must be present, `ow > 0`, `x` must hold `2·oh` rows
    /// of `w ≥ 2·ow` values, and `y` and `argmax` `oh·ow` values.
    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn pool_2x2(
        x: &[f32],
        w: usize,
        (oh, ow): (usize, usize),
        y: &mut [f32],
        argmax: Option<&mut [u32]>,
    ) {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        let (right, below) = (_mm512_set1_epi32(1), _mm512_set1_epi32(w as i32));
        let two = _mm512_slli_epi32::<1>(_mm512_setr_epi32(
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        ));
        let idx = argmax.map(|a| a.as_mut_ptr());
        for oy in 0..oh {
            let (top, bottom) = (x.as_ptr().add(2 * oy * w), x.as_ptr().add((2 * oy + 1) * w));
            for ox in (0..ow).step_by(16) {
                // Outputs ox.. read inputs 2·ox.., two vectors of them.
                let n = (ow - ox).min(16);
                let live = ((1u32 << n) - 1) as __mmask16;
                let (lo, hi) = (mask_first(2 * n), mask_first((2 * n).saturating_sub(16)));
                let pairs = |row: *const f32| {
                    let (a, b) = (row.add(2 * ox), row.add(2 * ox + 16));
                    let (a, b) = (_mm512_maskz_loadu_ps(lo, a), _mm512_maskz_loadu_ps(hi, b));
                    (_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b))
                };
                let ((top_l, top_r), (bot_l, bot_r)) = (pairs(top), pairs(bottom));

                // The scan order of the scalar loop: a strictly greater value
                // or a NaN takes over, lane by lane.
                let base = _mm512_set1_epi32((2 * oy * w + 2 * ox) as i32);
                let at = _mm512_add_epi32(base, two);
                let (mut best, mut best_at) = (top_l, at);
                let candidates = [
                    (top_r, _mm512_add_epi32(at, right)),
                    (bot_l, _mm512_add_epi32(at, below)),
                    (bot_r, _mm512_add_epi32(_mm512_add_epi32(at, below), right)),
                ];
                for (v, v_at) in candidates {
                    let greater = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                    let take = greater | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                    best = _mm512_mask_blend_ps(take, best, v);
                    best_at = _mm512_mask_blend_epi32(take, best_at, v_at);
                }
                _mm512_mask_storeu_ps(y.as_mut_ptr().add(oy * ow + ox), live, best);
                if let Some(idx) = idx {
                    _mm512_mask_storeu_epi32(idx.add(oy * ow + ox).cast(), live, best_at);
                }
            }
        }
    }

    /// Writes the gradient of every input the windows cover: each output's
    /// `dy` (masked by `relu_mask > 0`) at its argmax, 0 at the other three
    /// inputs of its window; sixteen windows at a time.
    ///
    /// # Safety
    ///
    /// AVX-512 F and VL must be present, `ow > 0`; `argmax`, `dy` and the
    /// mask hold `oh·ow` values, `dx` `2·oh` rows of `w ≥ 2·ow`.
    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn unpool_2x2(
        argmax: &[u32],
        dy: &[f32],
        relu_mask: Option<&[f32]>,
        w: usize,
        (oh, ow): (usize, usize),
        dx: &mut [f32],
    ) {
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let two = _mm512_slli_epi32::<1>(lanes);
        // Lane l of the first half of a row pair is window l/2's left (l even)
        // or right input; the second half continues from window 8.
        let first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let second = _mm512_add_epi32(first, _mm512_set1_epi32(8));
        let zero = _mm512_setzero_ps();
        for oy in 0..oh {
            for ox in (0..ow).step_by(16) {
                let n = (ow - ox).min(16);
                let live = mask_first(n);
                let o = oy * ow + ox;
                let mut grad = _mm512_maskz_loadu_ps(live, dy.as_ptr().add(o));
                if let Some(y) = relu_mask {
                    let y = _mm512_maskz_loadu_ps(live, y.as_ptr().add(o));
                    grad = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(y, zero), grad);
                }
                let at = _mm512_maskz_loadu_epi32(live, argmax.as_ptr().add(o).cast());
                let top = _mm512_add_epi32(_mm512_set1_epi32((2 * oy * w + 2 * ox) as i32), two);
                let is = |offset: usize| {
                    let place = _mm512_add_epi32(top, _mm512_set1_epi32(offset as i32));
                    _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, place), grad)
                };
                let (left, right) = (is(0), is(1));
                let (below_left, below_right) = (is(w), is(w + 1));
                let (lo, hi) = (mask_first(2 * n), mask_first((2 * n).saturating_sub(16)));
                let rows = [(2 * oy, left, right), (2 * oy + 1, below_left, below_right)];
                for (iy, even, odd) in rows {
                    let out = dx.as_mut_ptr().add(iy * w + 2 * ox);
                    _mm512_mask_storeu_ps(out, lo, _mm512_permutex2var_ps(even, first, odd));
                    let rest = _mm512_permutex2var_ps(even, second, odd);
                    _mm512_mask_storeu_ps(out.add(16), hi, rest);
                }
            }
        }
    }

    /// The first `n` of sixteen lanes.
    #[inline(always)]
    fn mask_first(n: usize) -> __mmask16 {
        ((1u32 << n.min(16)) - 1) as __mmask16
    }
}

/// Backward of [`maxpool_plane`] for 2×2 windows with stride 2 and no padding,
/// where every input lies in at most one window: writes every value of `dx`
/// (`dy` at each window's argmax, 0 elsewhere), so `dx` need not be cleared
/// first. With `relu_mask`, as [`maxpool_plane_backward`].
///
/// # Panics
///
/// When the window is not 2×2 with stride 2 and no padding, or a slice is
/// shorter than the geometry requires.
pub fn maxpool_2x2_backward(
    g: &Window,
    argmax: &[u32],
    dy: &[f32],
    relu_mask: Option<&[f32]>,
    dx: &mut [f32],
) {
    maxpool_2x2_backward_at(level(), g, argmax, dy, relu_mask, dx);
}

/// [`maxpool_2x2_backward`] at a given level.
fn maxpool_2x2_backward_at(
    level: Level,
    g: &Window,
    argmax: &[u32],
    dy: &[f32],
    relu_mask: Option<&[f32]>,
    dx: &mut [f32],
) {
    assert_eq!((g.kh, g.kw, g.sh, g.sw, g.ph, g.pw), (2, 2, 2, 2, 0, 0), "a 2×2 pooling");
    let (oh, ow, w) = (g.oh(), g.ow(), g.w);
    assert!(argmax.len() >= oh * ow && dy.len() >= oh * ow, "maxpool: outputs too short");
    assert!(relu_mask.is_none_or(|y| y.len() >= oh * ow), "maxpool: mask too short");
    assert!(dx.len() >= g.h * w, "maxpool: dx too short");

    // Inputs in no window: a last odd row, a last odd column.
    dx[2 * oh * w..g.h * w].fill(0.0);
    if w > 2 * ow {
        for iy in 0..2 * oh {
            dx[iy * w + 2 * ow..(iy + 1) * w].fill(0.0);
        }
    }

    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx512 && ow > 0 {
        // SAFETY: AVX-512 is present; the asserts bound every read and the
        // kernel writes only the 2·oh rows of 2·ow inputs the windows cover.
        unsafe { avx512::unpool_2x2(argmax, dy, relu_mask, w, (oh, ow), dx) };
        done = oh;
    }
    for oy in done..oh {
        for ox in 0..ow {
            let o = oy * ow + ox;
            let grad = if relu_mask.is_none_or(|y| y[o] > 0.0) { dy[o] } else { 0.0 };
            let top = 2 * oy * w + 2 * ox;
            for at in [top, top + 1, top + w, top + w + 1] {
                dx[at] = if argmax[o] as usize == at { grad } else { 0.0 };
            }
        }
    }
}

/// Backward of [`maxpool_plane`]: adds each `dy` into `dx` at its argmax, so an
/// input chosen by overlapping windows collects all their gradients. With
/// `relu_mask` (the pooled outputs `y`), only where `y > 0`: the gradient
/// through a ReLU that came before the pooling.
pub fn maxpool_plane_backward(
    argmax: &[u32],
    dy: &[f32],
    relu_mask: Option<&[f32]>,
    dx: &mut [f32],
) {
    match relu_mask {
        Some(y) => {
            for ((&at, &g), &y) in argmax.iter().zip(dy).zip(y) {
                if y > 0.0 {
                    dx[at as usize] += g;
                }
            }
        }
        None => {
            for (&at, &g) in argmax.iter().zip(dy) {
                dx[at as usize] += g;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::simd::levels;
    use super::*;

    #[test]
    fn fast_2x2_path_matches_the_general_loop() {
        // Ties, a NaN and an odd width (the last column is dropped).
        let g = Window { c: 1, h: 4, w: 5, kh: 2, kw: 2, sh: 2, sw: 2, ph: 0, pw: 0 };
        let x = [
            1.0,
            1.0,
            3.0,
            2.0,
            9.0, //
            0.0,
            1.0,
            3.0,
            f32::NAN,
            9.0, //
            -1.0,
            -2.0,
            5.0,
            7.0,
            0.0, //
            -1.0,
            -0.5,
            7.0,
            6.0,
            0.0,
        ];
        let (mut fast, mut fast_at) = ([0.0; 4], [0; 4]);
        maxpool_2x2(&g, &x, &mut fast, Some(&mut fast_at));
        let (mut slow, mut slow_at) = ([0.0; 4], [0; 4]);
        maxpool_general(&g, &x, &mut slow, Some(&mut slow_at));
        assert_eq!(fast_at, [0, 8, 16, 13]);
        assert_eq!(fast_at, slow_at);
        assert!(fast[1].is_nan() && slow[1].is_nan());
        assert_eq!([fast[0], fast[2], fast[3]], [1.0, -0.5, 7.0]);
        assert_eq!([slow[0], slow[2], slow[3]], [1.0, -0.5, 7.0]);

        let mut no_index = [0.0; 4];
        maxpool_2x2(&g, &x, &mut no_index, None);
        assert_eq!([no_index[0], no_index[2], no_index[3]], [1.0, -0.5, 7.0]);
    }

    #[test]
    fn eight_wide_2x2_path_matches_the_general_loop_on_ties_and_nans() {
        // Few distinct values, so ties are common; NaNs sprinkled in. Widths
        // with and without a scalar tail after the blocks of eight outputs.
        for (h, w) in [(4, 16), (6, 17), (3, 35), (8, 48), (2, 2), (24, 24), (28, 28), (4, 70)] {
            let g = Window { c: 1, h, w, kh: 2, kw: 2, sh: 2, sw: 2, ph: 0, pw: 0 };
            let x: Vec<f32> = (0..h * w)
                .map(|i| if i % 29 == 7 { f32::NAN } else { ((i * 7919) % 5) as f32 - 2.0 })
                .collect();
            let n = g.oh() * g.ow();
            let (mut slow, mut slow_at) = (vec![0.0; n], vec![0; n]);
            maxpool_general(&g, &x, &mut slow, Some(&mut slow_at));
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            for level in levels() {
                let (mut fast, mut fast_at) = (vec![0.0; n], vec![0; n]);
                maxpool_2x2_at(level, &g, &x, &mut fast, Some(&mut fast_at));
                assert_eq!(fast_at, slow_at, "{level:?} {h}x{w}");
                assert_eq!(bits(&fast), bits(&slow), "{level:?} {h}x{w}");

                let mut no_index = vec![0.0; n];
                maxpool_2x2_at(level, &g, &x, &mut no_index, None);
                assert_eq!(bits(&no_index), bits(&slow), "{level:?} {h}x{w} without argmax");
            }
        }
    }

    #[test]
    fn direct_2x2_backward_matches_the_scatter_at_every_level() {
        for (h, w) in [(4, 16), (6, 17), (3, 35), (24, 24), (28, 28), (5, 70), (2, 2)] {
            let g = Window { c: 1, h, w, kh: 2, kw: 2, sh: 2, sw: 2, ph: 0, pw: 0 };
            let x: Vec<f32> = (0..h * w).map(|i| ((i * 7919) % 11) as f32 - 5.0).collect();
            let n = g.oh() * g.ow();
            let (mut y, mut argmax) = (vec![0.0; n], vec![0; n]);
            maxpool_general(&g, &x, &mut y, Some(&mut argmax));
            let dy: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
            for mask in [None, Some(&y[..])] {
                let mut want = vec![0.0; h * w];
                maxpool_plane_backward(&argmax, &dy, mask, &mut want);
                for level in levels() {
                    let mut got = vec![f32::NAN; h * w];
                    maxpool_2x2_backward_at(level, &g, &argmax, &dy, mask, &mut got);
                    assert_eq!(got, want, "{level:?} {h}x{w} masked: {}", mask.is_some());
                }
            }
        }
    }

    #[test]
    fn first_maximum_wins_ties_and_padding_never_wins() {
        let g = Window { c: 1, h: 2, w: 2, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1 };
        let x = [-5.0, -1.0, -1.0, -7.0];
        let (mut y, mut argmax) = ([0.0], [9]);
        maxpool_plane(&g, &x, &mut y, Some(&mut argmax));
        assert_eq!((y[0], argmax[0]), (-1.0, 1));
    }
}
