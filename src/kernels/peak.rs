//! The FMA-loop peak: how many `f32` FLOP/s the cores can issue when nothing
//! but independent fused multiply-adds run. The ceiling every kernel is
//! compared against.

use std::time::Instant;

use super::simd::{level, Level};

/// Fused multiply-adds each thread runs per vector accumulator.
const ITERATIONS: usize = 20_000_000;

/// Independent accumulators: enough to cover FMA latency on two pipes.
const CHAINS: usize = 12;

/// GFLOP/s of independent FMAs on every thread of the current rayon pool
/// (`threads` of them), with the widest vectors the kernels use.
pub fn fma_peak(threads: usize) -> f64 {
    let started = Instant::now();
    let flops: Vec<f64> = rayon::broadcast(|_| fma_loop());
    let seconds = started.elapsed().as_secs_f64();
    debug_assert_eq!(flops.len(), threads, "broadcast runs once per pool thread");
    flops.iter().sum::<f64>() / seconds / 1e9
}

/// Runs the loop on this thread, at the widest vector level in use, and
/// returns the FLOPs it did.
fn fma_loop() -> f64 {
    let lanes = match level() {
        // SAFETY: `level` only reports what the CPU supports.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { wide::fma_loop_avx512() },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { wide::fma_loop_avx2() },
        _ => {
            let mut acc = [1.0f32; CHAINS];
            for _ in 0..ITERATIONS {
                for a in &mut acc {
                    *a = a.mul_add(0.999_999, 1e-7);
                }
            }
            std::hint::black_box(acc);
            1
        }
    };
    (ITERATIONS * CHAINS * lanes * 2) as f64
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use super::super::simd::{Avx2, Avx512, Simd};
    use super::{CHAINS, ITERATIONS};

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma_loop_avx2() -> usize {
        fma_loop::<Avx2>()
    }

    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn fma_loop_avx512() -> usize {
        fma_loop::<Avx512>()
    }

    /// Runs the chains and returns the lanes per vector.
    #[inline(always)]
    unsafe fn fma_loop<S: Simd>() -> usize {
        let (mul, add) = (S::splat(0.999_999), S::splat(1e-7));
        let mut acc = [S::splat(1.0); CHAINS];
        for _ in 0..ITERATIONS {
            for a in &mut acc {
                *a = S::fmadd(*a, mul, add);
            }
        }
        let total = acc.iter().fold(0.0, |s, &a| s + S::sum(a));
        std::hint::black_box(total);
        S::LANES
    }
}
