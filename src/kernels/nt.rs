//! `c (+)= a · bᵀ` with both operands row-major along the inner dimension and
//! read in place: every entry of `c` is a dot product of a row of `a` with a
//! row of `b`. This is a linear layer's forward pass (`x · wᵀ`, with `w`
//! stored `[out, in]` as PyTorch does); reading `w` in place saves copying
//! the whole weight every step, which a packed product must do.
//!
//! The kernel computes a tile of entries at once, one vector accumulator
//! each, sharing each load of `a` across the rows of `b` in the tile: 4×6
//! with AVX-512, 3×4 with AVX2.

use std::ops::Range;

use super::simd::{level, Level};

/// Bytes of `b` kept in L2 while every row of `a` passes over them.
const B_BLOCK_BYTES: usize = 128 << 10;

/// `c[m, n] = a[m, k] · b[n, k]ᵀ` (or `+=`), rows of `a` limited to `rows`;
/// `c` starts at row `rows.start`. Row strides: `a` and `b` are `k`, `c` is `n`.
///
/// # Panics
///
/// When a slice is shorter than its matrix.
pub fn gemm_nt_rows(
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    rows: Range<usize>,
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(a.len() >= m * k && b.len() >= n * k, "gemm_nt: a or b too short");
    assert!(rows.end <= m && c.len() >= rows.len() * n, "gemm_nt: c too short");

    run(level(), a, b, (m, n, k), rows, c, accumulate);
}

/// [`gemm_nt_rows`] at a given level, after its checks.
fn run(
    level: Level,
    a: &[f32],
    b: &[f32],
    (_, n, k): (usize, usize, usize),
    rows: Range<usize>,
    c: &mut [f32],
    accumulate: bool,
) {
    // SAFETY: the level is one the CPU has; the caller's asserts bound every
    // row the kernel reads and every entry it writes.
    #[cfg(target_arch = "x86_64")]
    match level {
        Level::Avx512 => return unsafe { wide::gemm_nt_avx512(a, b, n, k, rows, c, accumulate) },
        Level::Avx2 => return unsafe { wide::gemm_nt_avx2(a, b, n, k, rows, c, accumulate) },
        Level::Portable => {}
    }
    for (i, c_row) in rows.zip(c.chunks_mut(n)) {
        let a_row = &a[i * k..(i + 1) * k];
        for (j, out) in c_row.iter_mut().enumerate() {
            let value = super::dot(a_row, &b[j * k..(j + 1) * k]);
            *out = if accumulate { *out + value } else { value };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use std::ops::Range;

    use super::super::simd::{per_width, Simd};
    use super::B_BLOCK_BYTES;

    per_width!(gemm_nt, gemm_nt_avx2, gemm_nt_avx512, (
        a: &[f32],
        b: &[f32],
        n: usize,
        k: usize,
        rows: Range<usize>,
        c: &mut [f32],
        accumulate: bool
    ));

    #[inline(always)]
    unsafe fn gemm_nt<S: Simd>(
        a: &[f32],
        b: &[f32],
        n: usize,
        k: usize,
        rows: Range<usize>,
        c: &mut [f32],
        accumulate: bool,
    ) {
        if S::LANES >= 16 {
            // Twenty-four of the thirty-two registers accumulate: ten loads
            // feed twenty-four FMAs.
            gemm_nt_tiles::<S, 4, 6>(a, b, n, k, rows, c, accumulate)
        } else {
            // Twelve of the sixteen.
            gemm_nt_tiles::<S, 3, 4>(a, b, n, k, rows, c, accumulate)
        }
    }

    /// Tiles of `TA` rows of `a` by `TB` rows of `b`.
    #[inline(always)]
    unsafe fn gemm_nt_tiles<S: Simd, const TA: usize, const TB: usize>(
        a: &[f32],
        b: &[f32],
        n: usize,
        k: usize,
        rows: Range<usize>,
        c: &mut [f32],
        accumulate: bool,
    ) {
        // Rows of b in blocks of about 128 KiB, each passed over by every row
        // of a while it sits in L2; otherwise all of b streams from memory
        // once per TA rows of a.
        let first = rows.start;
        let block = ((B_BLOCK_BYTES / (4 * k.max(1))) / TB * TB).max(TB);
        for j_start in (0..n).step_by(block) {
            let j_end = (j_start + block).min(n);
            for i0 in rows.clone().step_by(TA) {
                let ta = TA.min(rows.end - i0);
                for j0 in (j_start..j_end).step_by(TB) {
                    let tb = TB.min(j_end - j0);
                    let out = tile::<S, TA, TB>(a, b, k, (i0, ta), (j0, tb));
                    for (r, out_r) in out.iter().enumerate().take(ta) {
                        let at = (i0 - first + r) * n + j0;
                        for (dst, &v) in c[at..at + tb].iter_mut().zip(out_r) {
                            *dst = if accumulate { *dst + v } else { v };
                        }
                    }
                }
            }
        }
    }

    /// Up to `TA × TB` dot products of length `k`; rows past `ta`/`tb`
    /// repeat the last valid row (their results are discarded), so the loop
    /// has no branches.
    #[inline(always)]
    unsafe fn tile<S: Simd, const TA: usize, const TB: usize>(
        a: &[f32],
        b: &[f32],
        k: usize,
        (i0, ta): (usize, usize),
        (j0, tb): (usize, usize),
    ) -> [[f32; TB]; TA] {
        let a_rows: [*const f32; TA] =
            std::array::from_fn(|r| a.as_ptr().add((i0 + r.min(ta - 1)) * k));
        let b_rows: [*const f32; TB] =
            std::array::from_fn(|s| b.as_ptr().add((j0 + s.min(tb - 1)) * k));
        let mut acc = [[S::zero(); TB]; TA];

        // Whole vectors, then the last k % LANES terms with the other lanes
        // read as zero.
        let blocks = k / S::LANES;
        for p in 0..blocks {
            step::<S, TA, TB>(&mut acc, &a_rows, &b_rows, p * S::LANES, None);
        }
        let rest = k - blocks * S::LANES;
        if rest > 0 {
            let mask = Some(S::mask(rest));
            step::<S, TA, TB>(&mut acc, &a_rows, &b_rows, blocks * S::LANES, mask);
        }
        acc.map(|acc_r| acc_r.map(|v| S::sum(v)))
    }

    /// `acc[r][s] += a_rows[r][at..] · b_rows[s][at..]` for one vector of
    /// lanes, or only the lanes of `mask`.
    #[inline(always)]
    unsafe fn step<S: Simd, const TA: usize, const TB: usize>(
        acc: &mut [[S::V; TB]; TA],
        a_rows: &[*const f32; TA],
        b_rows: &[*const f32; TB],
        at: usize,
        mask: Option<S::Mask>,
    ) {
        let load = |row: *const f32| match mask {
            Some(mask) => S::load_masked(row.add(at), mask),
            None => S::load(row.add(at)),
        };
        let xs: [S::V; TA] = a_rows.map(load);
        for (s, &b_row) in b_rows.iter().enumerate() {
            let w = load(b_row);
            for (acc_r, &x) in acc.iter_mut().zip(&xs) {
                acc_r[s] = S::fmadd(x, w, acc_r[s]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::simd::levels;
    use super::*;

    #[test]
    fn matches_naive_on_odd_shapes() {
        for (m, n, k) in [(1, 1, 1), (3, 4, 8), (5, 7, 13), (8, 10, 784), (4, 3, 0), (9, 13, 37)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.5).collect();
            let mut want = vec![0.0; m * n];
            for i in 0..m {
                for j in 0..n {
                    want[i * n + j] = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
                }
            }
            for level in levels() {
                let mut c = vec![f32::NAN; m * n];
                run(level, &a, &b, (m, n, k), 0..m, &mut c, false);
                assert_eq!(c, want, "{level:?} {m}×{n}×{k}");
            }

            // Rows 1.. only, accumulating.
            if m > 1 {
                let mut part = vec![1.0; (m - 1) * n];
                gemm_nt_rows(&a, &b, (m, n, k), 1..m, &mut part, true);
                let plus_one: Vec<f32> = want[n..].iter().map(|v| v + 1.0).collect();
                assert_eq!(part, plus_one);
            }
        }
    }
}
