//! `c (+)= a · bᵀ` with both operands row-major along the inner dimension and
//! read in place: every entry of `c` is a dot product of a row of `a` with a
//! row of `b`. This is a linear layer's forward pass (`x · wᵀ`, with `w`
//! stored `[out, in]` as PyTorch does); reading `w` in place saves copying
//! the whole weight every step, which a packed product must do.
//!
//! The AVX2+FMA kernel computes 3×4 entries at once in twelve vector
//! accumulators, sharing each load of `a` across four rows of `b`.

use std::ops::Range;

/// Rows of `a` per tile.
const TA: usize = 3;

/// Rows of `b` per tile.
const TB: usize = 4;

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

    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected; the asserts bound every
        // row the kernel reads and every entry it writes.
        unsafe { avx2::gemm_nt(a, b, n, k, rows, c, accumulate) };
        return;
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
mod avx2 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{B_BLOCK_BYTES, TA, TB};

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemm_nt(
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
        // once per three rows of a.
        let first = rows.start;
        let block = ((B_BLOCK_BYTES / (4 * k.max(1))) / TB * TB).max(TB);
        for j_start in (0..n).step_by(block) {
            let j_end = (j_start + block).min(n);
            for i0 in rows.clone().step_by(TA) {
                let ta = TA.min(rows.end - i0);
                for j0 in (j_start..j_end).step_by(TB) {
                    let tb = TB.min(j_end - j0);
                    let mut out = [[0.0f32; TB]; TA];
                    tile(a, b, k, i0, ta, j0, tb, &mut out);
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

    /// Up to 3×4 dot products of length `k`; rows past `ta`/`tb` repeat the
    /// last valid row (their results are discarded), so the loop has no
    /// branches.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        a: &[f32],
        b: &[f32],
        k: usize,
        i0: usize,
        ta: usize,
        j0: usize,
        tb: usize,
        out: &mut [[f32; TB]; TA],
    ) {
        let a_rows: [*const f32; TA] =
            std::array::from_fn(|r| a.as_ptr().add((i0 + r.min(ta - 1)) * k));
        let b_rows: [*const f32; TB] =
            std::array::from_fn(|s| b.as_ptr().add((j0 + s.min(tb - 1)) * k));
        let mut acc = [[_mm256_setzero_ps(); TB]; TA];

        let blocks = k / 8;
        for p in 0..blocks {
            let xs: [__m256; TA] = std::array::from_fn(|r| _mm256_loadu_ps(a_rows[r].add(p * 8)));
            for s in 0..TB {
                let w = _mm256_loadu_ps(b_rows[s].add(p * 8));
                for r in 0..TA {
                    acc[r][s] = _mm256_fmadd_ps(xs[r], w, acc[r][s]);
                }
            }
        }

        // Horizontal sums, plus the last k % 8 terms.
        for r in 0..TA {
            for s in 0..TB {
                let mut lanes = [0.0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r][s]);
                let mut sum: f32 = lanes.iter().sum();
                for p in blocks * 8..k {
                    sum += *a_rows[r].add(p) * *b_rows[s].add(p);
                }
                out[r][s] = sum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_on_odd_shapes() {
        for (m, n, k) in [(1, 1, 1), (3, 4, 8), (5, 7, 13), (8, 10, 784), (4, 3, 0)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.5).collect();
            let mut want = vec![0.0; m * n];
            for i in 0..m {
                for j in 0..n {
                    want[i * n + j] = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
                }
            }
            let mut c = vec![f32::NAN; m * n];
            gemm_nt_rows(&a, &b, (m, n, k), 0..m, &mut c, false);
            assert_eq!(c, want, "{m}×{n}×{k}");

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
