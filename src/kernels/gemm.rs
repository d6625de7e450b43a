//! General matrix products on top of the packed kernel: either operand may be
//! stored transposed, the product may overwrite or add into `c`, and large
//! products are split over the rayon pool by rows of `c`.
//!
//! All matrices are row-major `f32` slices. Packing buffers are kept per
//! thread, so a product allocates nothing once a thread has seen its size.

use std::cell::RefCell;

use rayon::prelude::*;

use super::packed::{gemm_packed_panels, PackedA, MR};
use super::transpose::transpose;

/// Products smaller than this many multiply-adds run on one thread; below it
/// the cost of waking the pool is larger than the work.
const PARALLEL_MIN_MACS: usize = 1 << 20;

thread_local! {
    /// Per-thread scratch: the packed left operand and a transposed right one.
    static SCRATCH: RefCell<(PackedA, Vec<f32>)> = RefCell::new((PackedA::default(), Vec::new()));
}

/// `c = a · b` (or `c += a · b`), with `a` `[m, k]`, `b` `[k, n]`, `c` `[m, n]`.
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    /// Rows of `a` and `c`.
    pub m: usize,
    /// Columns of `b` and `c`.
    pub n: usize,
    /// Columns of `a`, rows of `b`.
    pub k: usize,
    /// `a` is stored as `[k, m]` and used transposed.
    pub trans_a: bool,
    /// `b` is stored as `[n, k]` and used transposed.
    pub trans_b: bool,
    /// Add into `c` instead of overwriting it.
    pub accumulate: bool,
}

impl Gemm {
    /// `c = a · b` with neither operand transposed.
    pub fn new(m: usize, n: usize, k: usize) -> Gemm {
        Gemm { m, n, k, trans_a: false, trans_b: false, accumulate: false }
    }

    /// Use `a` transposed (`a` stored `[k, m]`).
    pub fn ta(mut self) -> Gemm {
        self.trans_a = true;
        self
    }

    /// Use `b` transposed (`b` stored `[n, k]`).
    pub fn tb(mut self) -> Gemm {
        self.trans_b = true;
        self
    }

    /// Add into `c` instead of overwriting it.
    pub fn acc(mut self) -> Gemm {
        self.accumulate = true;
        self
    }

    /// Runs on the calling thread only. Use inside a loop that is already
    /// parallel, so the two levels do not oversubscribe the cores.
    ///
    /// # Panics
    ///
    /// When a slice is shorter than its matrix.
    pub fn run(&self, a: &[f32], b: &[f32], c: &mut [f32]) {
        self.call(a, b, c, false);
    }

    /// Splits the rows of `c` over the current rayon pool when the product is
    /// big enough.
    ///
    /// # Panics
    ///
    /// As [`Gemm::run`].
    pub fn run_par(&self, a: &[f32], b: &[f32], c: &mut [f32]) {
        let big = self.m * self.n * self.k >= PARALLEL_MIN_MACS;
        self.call(a, b, c, big && rayon::current_num_threads() > 1);
    }

    fn call(&self, a: &[f32], b: &[f32], c: &mut [f32], parallel: bool) {
        let Gemm { m, n, k, .. } = *self;
        assert!(a.len() >= m * k, "gemm: a has {} elements, needs {m}×{k}", a.len());
        assert!(b.len() >= k * n, "gemm: b has {} elements, needs {k}×{n}", b.len());
        assert!(c.len() >= m * n, "gemm: c has {} elements, needs {m}×{n}", c.len());
        if m == 0 || n == 0 {
            return;
        }

        SCRATCH.with(|scratch| {
            let (packed, transposed) = &mut *scratch.borrow_mut();
            packed.pack(a, m, k, self.trans_a);

            // The kernel reads b row-major; a transposed b is turned once.
            let b = if self.trans_b {
                transposed.resize(n * k, 0.0);
                transpose(b, (n, k), transposed, n);
                &transposed[..]
            } else {
                b
            };

            let c = &mut c[..m * n];
            if !parallel {
                gemm_packed_panels(packed, 0..m.div_ceil(MR), b, n, n, c, n, self.accumulate);
                return;
            }

            // Rows of c in runs of whole panels, about two per thread.
            let panels = m.div_ceil(MR);
            let per_task = panels.div_ceil(2 * rayon::current_num_threads()).max(1);
            let packed = &*packed;
            let tasks = c.par_chunks_mut(per_task * MR * n).enumerate().with_max_len(1);
            tasks.for_each(|(t, c_rows)| {
                let first = t * per_task;
                let last = (first + per_task).min(panels);
                gemm_packed_panels(packed, first..last, b, n, n, c_rows, n, self.accumulate);
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], ta: bool, tb: bool) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    c[i * n + j] += av * bv;
                }
            }
        }
        c
    }

    #[test]
    fn all_transpose_combinations_match_naive() {
        for (m, n, k) in [(5, 7, 3), (13, 33, 40), (64, 10, 37)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 9) as f32 * 0.5 - 2.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i % 4) as f32 - 1.5).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let mut g = Gemm::new(m, n, k);
                g.trans_a = ta;
                g.trans_b = tb;
                let want = naive(m, n, k, &a, &b, ta, tb);
                let mut c = vec![1.0; m * n];
                g.run(&a, &b, &mut c);
                assert_eq!(c, want, "{m}×{n}×{k} ta={ta} tb={tb}");

                let mut c2 = vec![1.0; m * n];
                g.acc().call(&a, &b, &mut c2, true);
                let plus_one: Vec<f32> = want.iter().map(|v| v + 1.0).collect();
                assert_eq!(c2, plus_one, "parallel, accumulating");
            }
        }
    }

    #[test]
    fn empty_inner_dimension_zeroes_output() {
        let mut c = vec![3.0; 4];
        Gemm::new(2, 2, 0).run(&[], &[], &mut c);
        assert_eq!(c, vec![0.0; 4]);
    }
}
