//! The FMA-loop peak: how many `f32` FLOP/s the cores can issue when nothing
//! but independent fused multiply-adds run. The ceiling every kernel is
//! compared against.

use std::time::Instant;

/// Fused multiply-adds each thread runs per vector accumulator.
const ITERATIONS: usize = 20_000_000;

/// Independent accumulators: enough to cover FMA latency on two pipes.
const CHAINS: usize = 10;

/// GFLOP/s of independent FMAs on every thread of the current rayon pool
/// (`threads` of them), with AVX2+FMA when the CPU has them.
pub fn fma_peak(threads: usize) -> f64 {
    let started = Instant::now();
    let flops: Vec<f64> = rayon::broadcast(|_| fma_loop());
    let seconds = started.elapsed().as_secs_f64();
    debug_assert_eq!(flops.len(), threads, "broadcast runs once per pool thread");
    flops.iter().sum::<f64>() / seconds / 1e9
}

/// Runs the loop on this thread and returns the FLOPs it did.
fn fma_loop() -> f64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: both features were just detected on this CPU.
        let sink = unsafe { fma_loop_avx2() };
        std::hint::black_box(sink);
        return (ITERATIONS * CHAINS * 8 * 2) as f64;
    }
    let mut acc = [1.0f32; CHAINS];
    for _ in 0..ITERATIONS {
        for a in &mut acc {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    std::hint::black_box(acc);
    (ITERATIONS * CHAINS * 2) as f64
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop_avx2() -> f32 {
    use std::arch::x86_64::*;

    let mul = _mm256_set1_ps(0.999_999);
    let add = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); CHAINS];
    for _ in 0..ITERATIONS {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, mul, add);
        }
    }
    let mut lanes = [0.0f32; 8];
    let total = acc.iter().fold(_mm256_setzero_ps(), |s, a| _mm256_add_ps(s, *a));
    _mm256_storeu_ps(lanes.as_mut_ptr(), total);
    lanes.iter().sum()
}
