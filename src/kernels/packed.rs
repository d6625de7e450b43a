//! A matrix product for convolution shapes: `c (+)= a · b` where `a` is small
//! and packed once (the weights), and `b` is read in place, row-major with any
//! row stride (an unfolded image, or `dy`). Skipping the packing of `b` is what
//! makes it faster than a general GEMM on these shapes, where `b` is touched
//! once per product and packing it would double the memory traffic.
//!
//! The kernel computes a tile of 6 rows by two vectors of `c` in twelve
//! registers: 6×32 with AVX-512, 6×16 with AVX2, chosen at run time.

use std::ops::Range;

use super::simd::{level, Level};

/// Rows of `a` per panel (output channels per tile of the convolution
/// kernels): one broadcast each per step of the inner loop.
pub const MR: usize = 6;

/// Steps of the inner dimension per pass, so that a `KC × 2·LANES` block of
/// `b` (16 or 32 KiB) and an `MR × KC` panel of `a` (6 KiB) share L1.
const KC: usize = 256;

/// The left operand, `m × k`, packed in panels of [`MR`] rows: within a panel,
/// the `MR` values of column `p` are adjacent, and short panels are padded
/// with zeros.
#[derive(Clone, Debug, Default)]
pub struct PackedA {
    data: Vec<f32>,
    m: usize,
    k: usize,
}

impl PackedA {
    /// Packs `a`, stored `[m, k]` row-major, or `[k, m]` when `transposed`.
    /// Reuses the buffer.
    ///
    /// # Panics
    ///
    /// When `a` is shorter than `m · k`.
    pub fn pack(&mut self, a: &[f32], m: usize, k: usize, transposed: bool) {
        assert!(a.len() >= m * k, "pack: a has {} elements, needs {m}×{k}", a.len());
        let panels = m.div_ceil(MR);
        self.data.clear();
        self.data.resize(panels * MR * k, 0.0);
        self.m = m;
        self.k = k;
        for panel in 0..panels {
            let out = &mut self.data[panel * MR * k..(panel + 1) * MR * k];
            for r in 0..MR.min(m - panel * MR) {
                let row = panel * MR + r;
                for p in 0..k {
                    out[p * MR + r] = if transposed { a[p * m + row] } else { a[row * k + p] };
                }
            }
        }
    }

    /// Rows of the packed matrix.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Columns of the packed matrix (the inner dimension of a product).
    pub fn depth(&self) -> usize {
        self.k
    }

    /// Panel `i`: rows `i·MR..` interleaved, `MR` values per column.
    pub(super) fn panel(&self, i: usize) -> &[f32] {
        &self.data[i * MR * self.k..(i + 1) * MR * self.k]
    }
}

/// `c[m, n] = a · b` (or `+=` with `accumulate`), with `b` `[k, n]` at row
/// stride `ldb` and `c` at row stride `ldc`.
///
/// # Panics
///
/// When `b` or `c` is too short for the shapes and strides.
pub fn gemm_packed(
    a: &PackedA,
    b: &[f32],
    ldb: usize,
    n: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    gemm_packed_panels(a, 0..a.m.div_ceil(MR), b, ldb, n, c, ldc, accumulate);
}

/// [`gemm_packed`] for the rows of `a` in `panels` (each [`MR`] rows) only;
/// `c` starts at the first of those rows. Lets threads share one packing.
///
/// # Panics
///
/// As [`gemm_packed`].
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_packed_panels(
    a: &PackedA,
    panels: Range<usize>,
    b: &[f32],
    ldb: usize,
    n: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let rows = (panels.end * MR).min(a.m).saturating_sub(panels.start * MR);
    if rows == 0 || n == 0 {
        return;
    }
    let k = a.k;
    assert!(panels.end <= a.m.div_ceil(MR), "gemm_packed: panels beyond a");
    assert!(ldb >= n && ldc >= n, "gemm_packed: row strides shorter than n");
    assert!(k == 0 || b.len() >= (k - 1) * ldb + n, "gemm_packed: b too short");
    assert!(c.len() >= (rows - 1) * ldc + n, "gemm_packed: c too short");

    run(level(), a, panels, b, ldb, n, c, ldc, accumulate);
}

/// [`gemm_packed_panels`] at a given instruction-set level (tests run every
/// level the CPU has).
#[allow(clippy::too_many_arguments)]
fn run(
    level: Level,
    a: &PackedA,
    panels: Range<usize>,
    b: &[f32],
    ldb: usize,
    n: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: `level` is one the CPU supports, and the caller's asserts bound
    // every index the kernels read or write.
    #[cfg(target_arch = "x86_64")]
    match level {
        Level::Avx512 => {
            return unsafe { wide::gemm_avx512(a, panels, b, ldb, n, c, ldc, accumulate) }
        }
        Level::Avx2 => return unsafe { wide::gemm_avx2(a, panels, b, ldb, n, c, ldc, accumulate) },
        Level::Portable => {}
    }
    portable(a, panels, b, ldb, n, c, ldc, accumulate);
}

/// The same product in plain loops, for CPUs without AVX2.
#[allow(clippy::too_many_arguments)]
fn portable(
    a: &PackedA,
    panels: Range<usize>,
    b: &[f32],
    ldb: usize,
    n: usize,
    c: &mut [f32],
    ldc: usize,
    acc: bool,
) {
    let first_row = panels.start * MR;
    for i in first_row..(panels.end * MR).min(a.m) {
        let (panel, r) = (i / MR, i % MR);
        let a_panel = &a.data[panel * MR * a.k..];
        let row = &mut c[(i - first_row) * ldc..(i - first_row) * ldc + n];
        if !acc {
            row.fill(0.0);
        }
        for p in 0..a.k {
            let av = a_panel[p * MR + r];
            let b_row = &b[p * ldb..p * ldb + n];
            row.iter_mut().zip(b_row).for_each(|(c, &b)| *c += av * b);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use super::super::simd::{per_width, put_tile, Simd};
    use super::{PackedA, Range, KC, MR};

    /// Vectors per row of a tile: a tile is `MR × 2·LANES` of `c`.
    const V: usize = 2;

    per_width!(gemm, gemm_avx2, gemm_avx512, (
        a: &PackedA,
        panels: Range<usize>,
        b: &[f32],
        ldb: usize,
        n: usize,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool
    ));

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm<S: Simd>(
        a: &PackedA,
        panels: Range<usize>,
        b: &[f32],
        ldb: usize,
        n: usize,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) {
        let (m, k) = (a.m, a.k);
        let nr = V * S::LANES;
        let first = panels.start;
        if k == 0 && !accumulate {
            // An empty sum: the tiles below would never run.
            let rows = (panels.end * MR).min(m) - first * MR;
            for i in 0..rows {
                c[i * ldc..i * ldc + n].fill(0.0);
            }
        }

        // Inner dimension in blocks of KC; within one, column blocks outside,
        // so one KC × nr block of b stays in L1 while every panel of a passes.
        // With several panels to serve, the block is first copied to a
        // contiguous buffer: rows of b a power-of-two apart (a 9216-wide
        // layer, a 1024² matrix) would otherwise share a few L1 sets and
        // evict each other.
        let copy_b = panels.len() >= 3;
        let mut block = AlignedBlock([0.0; KC * 32]);
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let add = accumulate || k0 > 0;
            for j0 in (0..n).step_by(nr) {
                let width = nr.min(n - j0);
                let (b_block, b_stride) = if copy_b {
                    for p in 0..kc {
                        let src = &b[(k0 + p) * ldb + j0..(k0 + p) * ldb + j0 + width];
                        block.0[p * nr..p * nr + width].copy_from_slice(src);
                    }
                    (block.0.as_ptr(), nr)
                } else {
                    (b.as_ptr().add(k0 * ldb + j0), ldb)
                };
                for panel in panels.clone() {
                    let rows = MR.min(m - panel * MR);
                    let a_panel = a.data.as_ptr().add(panel * MR * k + k0 * MR);
                    let c_tile = c.as_mut_ptr().add((panel - first) * MR * ldc + j0);
                    tile::<S>(a_panel, b_block, b_stride, kc, c_tile, ldc, rows, width, add);
                }
            }
        }
    }

    /// A KC × 32 block of b (the widest tile), aligned to a cache line.
    #[repr(align(64))]
    struct AlignedBlock([f32; KC * 32]);

    /// One `rows × width` tile (at most `MR × 2·LANES`) of `c`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<S: Simd>(
        a: *const f32,
        b: *const f32,
        ldb: usize,
        k: usize,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        width: usize,
        accumulate: bool,
    ) {
        let mut acc = [[S::zero(); V]; MR];
        let full = width == V * S::LANES;
        let live: [usize; V] = std::array::from_fn(|v| width.saturating_sub(v * S::LANES));
        let masks: [S::Mask; V] = std::array::from_fn(|v| S::mask(live[v].min(S::LANES)));

        // acc[r] += a[r, p] · b[p, j0..j0 + width] for every p.
        for p in 0..k {
            let b_row = b.add(p * ldb);
            let bv: [S::V; V] = if full {
                std::array::from_fn(|v| S::load(b_row.add(v * S::LANES)))
            } else {
                std::array::from_fn(|v| S::load_masked(b_row.add(v * S::LANES), masks[v]))
            };
            let a_col = a.add(p * MR);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = S::broadcast(a_col.add(r));
                for v in 0..V {
                    acc_r[v] = S::fmadd(av, bv[v], acc_r[v]);
                }
            }
        }

        put_tile::<S, V>(&acc, c, ldc, rows, width, accumulate);
    }
}

#[cfg(test)]
mod tests {
    use super::super::simd::levels;
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, ldb: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for p in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + p] * b[p * ldb + j];
                }
            }
        }
        c
    }

    #[test]
    fn matches_naive_on_odd_shapes_strides_and_every_level() {
        for (m, k, n, ldb) in [
            (1, 1, 1, 1),
            (6, 4, 16, 16),
            (7, 5, 17, 20),
            (32, 25, 196, 196),
            (13, 3, 33, 40),
            (19, 300, 70, 75),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let b: Vec<f32> = (0..k * ldb).map(|i| ((i * 3) % 7) as f32 * 0.5 - 1.0).collect();
            let want = naive(&a, &b, m, k, n, ldb);
            let mut packed = PackedA::default();
            packed.pack(&a, m, k, false);

            let mut c = vec![f32::NAN; m * n];
            gemm_packed(&packed, &b, ldb, n, &mut c, n, false);
            assert_eq!(c, want, "{m}×{k}×{n}");

            let mut c2 = vec![1.0; m * n];
            gemm_packed(&packed, &b, ldb, n, &mut c2, n, true);
            let plus_one: Vec<f32> = want.iter().map(|v| v + 1.0).collect();
            assert_eq!(c2, plus_one);

            for level in levels() {
                let mut c3 = vec![f32::NAN; m * n];
                run(level, &packed, 0..m.div_ceil(MR), &b, ldb, n, &mut c3, n, false);
                assert_eq!(c3, want, "{level:?} {m}×{k}×{n}");
                let mut c4 = vec![1.0; m * n];
                run(level, &packed, 0..m.div_ceil(MR), &b, ldb, n, &mut c4, n, true);
                assert_eq!(c4, plus_one, "{level:?} {m}×{k}×{n}, accumulating");
            }
        }
    }

    #[test]
    fn packs_a_transposed_operand() {
        let (m, k) = (7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32).collect();
        let at: Vec<f32> = (0..m * k).map(|i| a[(i % m) * k + i / m]).collect();
        let (mut p1, mut p2) = (PackedA::default(), PackedA::default());
        p1.pack(&a, m, k, false);
        p2.pack(&at, m, k, true);
        assert_eq!(p1.data, p2.data);
    }
}
