//! Matrix products through the `gemm` crate, behind a safe, checked call.
//!
//! All matrices are row-major `f32` slices. An operand may be stored
//! transposed, which costs nothing: the strides are swapped.

/// Products smaller than this many multiply-adds run on one thread; below it
/// the cost of waking the pool is larger than the work.
const PARALLEL_MIN_MACS: usize = 1 << 20;

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
    /// When a slice is shorter than its matrix; the unsafe call below relies
    /// on that check.
    pub fn run(&self, a: &[f32], b: &[f32], c: &mut [f32]) {
        self.call(a, b, c, gemm::Parallelism::None);
    }

    /// Runs on the current rayon pool when the product is big enough.
    ///
    /// # Panics
    ///
    /// As [`Gemm::run`].
    pub fn run_par(&self, a: &[f32], b: &[f32], c: &mut [f32]) {
        let threads = rayon::current_num_threads();
        let parallelism = if threads > 1 && self.m * self.n * self.k >= PARALLEL_MIN_MACS {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        self.call(a, b, c, parallelism);
    }

    fn call(&self, a: &[f32], b: &[f32], c: &mut [f32], parallelism: gemm::Parallelism) {
        let Gemm { m, n, k, .. } = *self;
        assert!(a.len() >= m * k, "gemm: a has {} elements, needs {m}×{k}", a.len());
        assert!(b.len() >= k * n, "gemm: b has {} elements, needs {k}×{n}", b.len());
        assert!(c.len() >= m * n, "gemm: c has {} elements, needs {m}×{n}", c.len());
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            // An empty sum; gemm would leave c untouched when overwriting.
            if !self.accumulate {
                c[..m * n].fill(0.0);
            }
            return;
        }

        // Strides (row, column) of each operand as stored.
        let (a_rs, a_cs) = if self.trans_a { (1, m as isize) } else { (k as isize, 1) };
        let (b_rs, b_cs) = if self.trans_b { (1, k as isize) } else { (n as isize, 1) };

        // SAFETY: the asserts above guarantee every element the strides reach
        // lies inside its slice; `c` is borrowed mutably and does not alias
        // `a` or `b`.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                self.accumulate,
                a.as_ptr(),
                a_cs,
                a_rs,
                b.as_ptr(),
                b_cs,
                b_rs,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
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
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 4) as f32 - 1.5).collect();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut g = Gemm::new(m, n, k);
            g.trans_a = ta;
            g.trans_b = tb;
            let mut c = vec![1.0; m * n];
            g.run(&a, &b, &mut c);
            assert_eq!(c, naive(m, n, k, &a, &b, ta, tb), "ta={ta} tb={tb}");

            let mut c2 = vec![1.0; m * n];
            g.acc().run(&a, &b, &mut c2);
            let want: Vec<f32> = naive(m, n, k, &a, &b, ta, tb).iter().map(|v| v + 1.0).collect();
            assert_eq!(c2, want);
        }
    }

    #[test]
    fn empty_inner_dimension_zeroes_output() {
        let mut c = vec![3.0; 4];
        Gemm::new(2, 2, 0).run(&[], &[], &mut c);
        assert_eq!(c, vec![0.0; 4]);
    }
}
