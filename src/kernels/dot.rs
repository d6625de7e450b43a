//! Dot products, for the matrix-vector case (a batch of one or a few images
//! through a linear layer), where a matrix product's packing would cost more
//! than the arithmetic.

use super::simd::{level, Level};

/// `Σ a[i] · b[i]` over the shorter of the two.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);

    // SAFETY: `level` only reports what the CPU has; the kernels read only
    // within the two equal-length slices.
    #[cfg(target_arch = "x86_64")]
    match level() {
        Level::Avx512 => return unsafe { wide::dot_avx512(a, b) },
        Level::Avx2 => return unsafe { wide::dot_avx2(a, b) },
        Level::Portable => {}
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

/// `Σ x[i]`, in several partial sums (so not in index order): a bias
/// gradient, summed over the positions of a plane.
pub fn sum(x: &[f32]) -> f32 {
    // Sixteen interleaved sums, which the compiler turns into vector adds.
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        acc.iter_mut().zip(chunk).for_each(|(a, v)| *a += v);
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use super::super::simd::{Avx2, Avx512, Simd};

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        dot::<Avx2>(a, b)
    }

    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        dot::<Avx512>(a, b)
    }

    #[inline(always)]
    unsafe fn dot<S: Simd>(a: &[f32], b: &[f32]) -> f32 {
        // Four accumulators cover the FMA latency.
        let mut acc = [S::zero(); 4];
        let step = 4 * S::LANES;
        let blocks = a.len() / step;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        for i in 0..blocks {
            for (j, acc_j) in acc.iter_mut().enumerate() {
                let at = i * step + j * S::LANES;
                *acc_j = S::fmadd(S::load(pa.add(at)), S::load(pb.add(at)), *acc_j);
            }
        }

        // The rest a vector at a time, the last one masked.
        for at in (blocks * step..a.len()).step_by(S::LANES) {
            let mask = S::mask(a.len() - at);
            let (x, y) = (S::load_masked(pa.add(at), mask), S::load_masked(pb.add(at), mask));
            acc[0] = S::fmadd(x, y, acc[0]);
        }
        S::sum(S::add(S::add(acc[0], acc[1]), S::add(acc[2], acc[3])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_adds_every_value() {
        for len in [0, 1, 15, 16, 17, 100, 576] {
            let x: Vec<f32> = (0..len).map(|i| (i % 7) as f32 - 3.0).collect();
            assert_eq!(sum(&x), x.iter().sum::<f32>(), "length {len}");
        }
    }

    #[test]
    fn matches_a_plain_sum_at_every_length() {
        for len in [0, 1, 7, 8, 31, 32, 33, 100, 784] {
            let a: Vec<f32> = (0..len).map(|i| (i % 5) as f32 - 2.0).collect();
            let b: Vec<f32> = (0..len).map(|i| (i % 3) as f32 * 0.5).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_eq!(dot(&a, &b), want, "length {len}");
            #[cfg(target_arch = "x86_64")]
            if level() >= Level::Avx2 {
                // SAFETY: the level was just checked.
                assert_eq!(unsafe { wide::dot_avx2(&a, &b) }, want, "avx2, length {len}");
            }
        }
    }
}
