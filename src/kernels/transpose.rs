//! Matrix transposition in 8×8 blocks: each block is read as eight rows and
//! written as eight rows, so both sides touch whole cache lines instead of
//! one value per line.

use super::simd::{level, Level};

/// Writes `src [rows, cols]` transposed into `dst`, whose rows (one per
/// column of `src`) are `ld ≥ rows` apart: `dst[j·ld + i] = src[i·cols + j]`.
///
/// # Panics
///
/// When a slice is too short for the shapes.
pub fn transpose(src: &[f32], (rows, cols): (usize, usize), dst: &mut [f32], ld: usize) {
    assert!(src.len() >= rows * cols, "transpose: src too short");
    assert!(ld >= rows, "transpose: ld shorter than a row");
    assert!(cols == 0 || dst.len() >= (cols - 1) * ld + rows, "transpose: dst too short");
    let blocked = if level() >= Level::Avx2 { rows / 8 * 8 } else { 0 };
    let blocked_cols = cols / 8 * 8;

    #[cfg(target_arch = "x86_64")]
    if blocked > 0 && blocked_cols > 0 {
        // SAFETY: AVX2 is present; the blocks lie within the asserted sizes.
        unsafe { avx2::blocks(src, cols, (blocked, blocked_cols), dst, ld) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let blocked = 0;

    // What the blocks left: the last rows % 8 rows, and the last cols % 8
    // columns of the blocked rows.
    let done_cols = if blocked > 0 { blocked_cols } else { 0 };
    for i in 0..rows {
        let from = if i < blocked { done_cols } else { 0 };
        for j in from..cols {
            dst[j * ld + i] = src[i * cols + j];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Transposes the top-left `rows × cols` of `src` (row stride `stride`),
    /// both multiples of 8, into `dst` (row stride `ld`).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn blocks(
        src: &[f32],
        stride: usize,
        (rows, cols): (usize, usize),
        dst: &mut [f32],
        ld: usize,
    ) {
        for i0 in (0..rows).step_by(8) {
            for j0 in (0..cols).step_by(8) {
                let at = src.as_ptr().add(i0 * stride + j0);
                let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(at.add(i * stride)));

                // Pairs of rows, then pairs of pairs, then the 128-bit halves.
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let u0 = _mm256_shuffle_ps::<0b01_00_01_00>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0b11_10_11_10>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0b01_00_01_00>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0b11_10_11_10>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0b01_00_01_00>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0b11_10_11_10>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0b01_00_01_00>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0b11_10_11_10>(t5, t7);
                let columns = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                let out = dst.as_mut_ptr().add(j0 * ld + i0);
                for (j, column) in columns.into_iter().enumerate() {
                    _mm256_storeu_ps(out.add(j * ld), column);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition_on_block_and_odd_shapes() {
        for (rows, cols, ld) in [(8, 8, 8), (16, 24, 16), (13, 21, 15), (64, 576, 64), (3, 5, 3)] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut dst = vec![-1.0; cols * ld];
            transpose(&src, (rows, cols), &mut dst, ld);
            for i in 0..rows {
                for j in 0..cols {
                    assert_eq!(dst[j * ld + i], src[i * cols + j], "{rows}×{cols} at {i},{j}");
                }
            }
            for j in 0..cols {
                assert!(dst[j * ld + rows..(j + 1) * ld].iter().all(|&v| v == -1.0), "gap kept");
            }
        }
    }
}
