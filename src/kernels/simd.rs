//! The vector width, chosen at run time: AVX-512 where the CPU has it, else
//! AVX2 with FMA, else plain loops. A kernel is written once, generic over
//! [`Simd`], and instantiated inside one `#[target_feature]` function per
//! width, so the same release binary runs on every x86-64 CPU and uses the
//! widest registers each one offers.
//!
//! Every method is `#[inline(always)]`: inlined into a function compiled
//! with the matching features, the intrinsics become single instructions.
//! Called anywhere else they would be calls, so the methods are only used
//! from such functions.

use std::sync::OnceLock;

/// Instruction sets the kernels are compiled for, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Plain Rust loops, for any CPU.
    Portable,
    /// 8-lane AVX2 with fused multiply-add.
    Avx2,
    /// 16-lane AVX-512 (foundation and vector-length subsets).
    Avx512,
}

impl Level {
    /// `f32` lanes of one vector register at this level.
    pub fn lanes(self) -> usize {
        match self {
            Level::Portable => 1,
            Level::Avx2 => 8,
            Level::Avx512 => 16,
        }
    }
}

/// The widest level this CPU supports, capped by the environment variable
/// `XENT_SIMD` (`avx512`, `avx2` or `portable`) when it is set, so a wider
/// path can be compared with a narrower one on the same machine.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("XENT_SIMD").as_deref() {
            Ok("portable") => Level::Portable,
            Ok("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        detected().min(cap)
    })
}

/// Runs `f` compiled for the widest level in use, so that the compiler
/// vectorises its loops with those registers: for elementwise loops (an
/// optimiser's update) that the compiler vectorises well on its own. `f`
/// gives the same result at every level, since Rust never fuses or
/// reorders floating-point operations on its own.
#[inline(always)]
pub fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: `level` only reports what the CPU supports.
        Level::Avx512 => return unsafe { with_avx512(f) },
        Level::Avx2 => return unsafe { with_avx2(f) },
        Level::Portable => {}
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Every level this CPU can run, narrowest first; tests run each kernel at
/// all of them.
#[cfg(test)]
pub(super) fn levels() -> Vec<Level> {
    [Level::Portable, Level::Avx2, Level::Avx512].into_iter().filter(|&l| l <= detected()).collect()
}

/// The widest level the CPU supports.
fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        // VL lets 256- and 128-bit instructions reach all 32 registers;
        // without it a horizontal sum would pin accumulators to the first 16.
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
            return Level::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
    }
    Level::Portable
}

/// One vector width's operations on `f32` lanes.
///
/// # Safety
///
/// The methods are only sound inside a function compiled with the width's
/// target features, on a CPU that has them; pointers must be valid for
/// the lanes they touch (masked lanes are never touched).
pub(super) trait Simd {
    /// Lanes per vector.
    const LANES: usize;
    /// A vector register.
    type V: Copy;
    /// Which lanes of a partial vector are live.
    type Mask: Copy;

    /// All lanes zero.
    unsafe fn zero() -> Self::V;
    /// Every lane `x`.
    unsafe fn splat(x: f32) -> Self::V;
    /// Every lane `*p`.
    unsafe fn broadcast(p: *const f32) -> Self::V;
    /// `LANES` values from `p`, any alignment.
    unsafe fn load(p: *const f32) -> Self::V;
    /// `LANES` values to `p`, any alignment.
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Lanes `lo..hi` (`hi <= LANES`).
    unsafe fn mask_range(lo: usize, hi: usize) -> Self::Mask;
    /// The live lanes from `p`, zero elsewhere.
    unsafe fn load_masked(p: *const f32, m: Self::Mask) -> Self::V;
    /// The live lanes to `p`.
    unsafe fn store_masked(p: *mut f32, m: Self::Mask, v: Self::V);
    /// `a · b + c`, rounded once.
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a + b`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// The sum of the lanes.
    unsafe fn sum(v: Self::V) -> f32;
    /// `max(v, 0)` lane by lane, with a NaN kept and -0 left as it is, as
    /// the scalar ReLU does.
    unsafe fn relu(v: Self::V) -> Self::V;

    /// The first `n` lanes (`n <= LANES`).
    #[inline(always)]
    unsafe fn mask(n: usize) -> Self::Mask {
        Self::mask_range(0, n)
    }

    /// Writes `v` (or adds it to what is there) to the first `n` lanes at `p`.
    #[inline(always)]
    unsafe fn put(p: *mut f32, v: Self::V, n: usize, accumulate: bool) {
        Self::put_range(p, v, (0, n), accumulate, false)
    }

    /// Writes `v` (or adds it to what is there, then applies a ReLU when
    /// `relu`) to lanes `lo..hi` at `p`, so lane `l` lands at `p + l`; the
    /// other lanes' addresses are never touched. A full vector takes the
    /// plain store, which is faster.
    #[inline(always)]
    unsafe fn put_range(
        p: *mut f32,
        v: Self::V,
        (lo, hi): (usize, usize),
        accumulate: bool,
        relu: bool,
    ) {
        let full = lo == 0 && hi >= Self::LANES;
        let m = Self::mask_range(lo, hi.min(Self::LANES));
        let mut v = match (accumulate, full) {
            (false, _) => v,
            (true, true) => Self::add(v, Self::load(p)),
            (true, false) => Self::add(v, Self::load_masked(p, m)),
        };
        if relu {
            v = Self::relu(v);
        }
        if full {
            Self::store(p, v);
        } else {
            Self::store_masked(p, m, v);
        }
    }
}

/// Writes (or adds) the first `rows` rows and `width` lanes of a tile of
/// accumulators, `V` vectors a row, to `c`, whose rows are `ldc` apart.
///
/// # Safety
///
/// As [`Simd`]; `c` must be valid for `rows` rows of `width` values.
#[inline(always)]
pub(super) unsafe fn put_tile<S: Simd, const V: usize>(
    acc: &[[S::V; V]],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    width: usize,
    accumulate: bool,
) {
    for (r, acc_r) in acc.iter().enumerate().take(rows) {
        let out = c.add(r * ldc);
        for (v, &value) in acc_r.iter().enumerate() {
            let live = width.saturating_sub(v * S::LANES);
            S::put(out.add(v * S::LANES), value, live, accumulate);
        }
    }
}

/// Expands to one entry point per vector width for a kernel generic over
/// [`Simd`]: `$avx2` and `$avx512` call `$kernel` inlined into a function
/// compiled for that width.
#[cfg(target_arch = "x86_64")]
macro_rules! per_width {
    ($kernel:ident, $avx2:ident, $avx512:ident, ($($arg:ident: $ty:ty),*)) => {
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $avx2($($arg: $ty),*) {
            $kernel::<$crate::kernels::simd::Avx2>($($arg),*)
        }

        #[target_feature(enable = "avx512f,avx512vl")]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $avx512($($arg: $ty),*) {
            $kernel::<$crate::kernels::simd::Avx512>($($arg),*)
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(super) use per_width;

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Simd;

    /// 8 lanes in a `ymm` register; needs `avx2,fma`.
    pub struct Avx2;

    /// 16 lanes in a `zmm` register; needs `avx512f,avx512vl`.
    pub struct Avx512;

    impl Simd for Avx2 {
        const LANES: usize = 8;
        type V = __m256;
        type Mask = __m256i;

        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn broadcast(p: *const f32) -> __m256 {
            _mm256_broadcast_ss(&*p)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn mask_range(lo: usize, hi: usize) -> __m256i {
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let below = _mm256_cmpgt_epi32(_mm256_set1_epi32(hi as i32), lanes);
            let from = _mm256_cmpgt_epi32(lanes, _mm256_set1_epi32(lo as i32 - 1));
            _mm256_and_si256(below, from)
        }
        #[inline(always)]
        unsafe fn load_masked(p: *const f32, m: __m256i) -> __m256 {
            _mm256_maskload_ps(p, m)
        }
        #[inline(always)]
        unsafe fn store_masked(p: *mut f32, m: __m256i, v: __m256) {
            _mm256_maskstore_ps(p, m, v)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn relu(v: __m256) -> __m256 {
            // maxps returns its second operand when either is NaN or both
            // are zeros, so a NaN and a -0 pass through.
            _mm256_max_ps(_mm256_setzero_ps(), v)
        }
        #[inline(always)]
        unsafe fn sum(v: __m256) -> f32 {
            let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
            _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<1>(pair, pair)))
        }
    }

    impl Simd for Avx512 {
        const LANES: usize = 16;
        type V = __m512;
        type Mask = __mmask16;

        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn broadcast(p: *const f32) -> __m512 {
            _mm512_set1_ps(*p)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn mask_range(lo: usize, hi: usize) -> __mmask16 {
            let below = (1u32 << hi.min(16)) - 1;
            (below & !((1u32 << lo.min(16)) - 1)) as __mmask16
        }
        #[inline(always)]
        unsafe fn load_masked(p: *const f32, m: __mmask16) -> __m512 {
            _mm512_maskz_loadu_ps(m, p)
        }
        #[inline(always)]
        unsafe fn store_masked(p: *mut f32, m: __mmask16, v: __m512) {
            _mm512_mask_storeu_ps(p, m, v)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn relu(v: __m512) -> __m512 {
            // As for AVX2: the second operand wins on NaN and equal zeros.
            _mm512_max_ps(_mm512_setzero_ps(), v)
        }
        #[inline(always)]
        unsafe fn sum(v: __m512) -> f32 {
            _mm512_reduce_add_ps(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_include_the_chosen_one() {
        let all = levels();
        assert_eq!(all[0], Level::Portable);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert!(all.contains(&level()));
    }
}
