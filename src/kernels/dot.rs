//! Dot products, for the matrix-vector case (a batch of one or a few images
//! through a linear layer), where a matrix product's packing would cost more
//! than the arithmetic.

/// `Σ a[i] · b[i]` over the shorter of the two.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);

    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected; the kernel reads only
        // within the two equal-length slices.
        return unsafe { dot_avx2(a, b) };
    }

    // Eight independent partial sums, so the loop is not one long chain.
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;

    // Four 8-lane accumulators cover the FMA latency.
    let mut acc = [_mm256_setzero_ps(); 4];
    let blocks = a.len() / 32;
    for i in 0..blocks {
        for (j, acc_j) in acc.iter_mut().enumerate() {
            let at = i * 32 + j * 8;
            let x = _mm256_loadu_ps(a.as_ptr().add(at));
            let y = _mm256_loadu_ps(b.as_ptr().add(at));
            *acc_j = _mm256_fmadd_ps(x, y, *acc_j);
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    let tail: f32 = a[blocks * 32..].iter().zip(&b[blocks * 32..]).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_sum_at_every_length() {
        for len in [0, 1, 7, 8, 31, 32, 33, 100, 784] {
            let a: Vec<f32> = (0..len).map(|i| (i % 5) as f32 - 2.0).collect();
            let b: Vec<f32> = (0..len).map(|i| (i % 3) as f32 * 0.5).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_eq!(dot(&a, &b), want, "length {len}");
        }
    }
}
