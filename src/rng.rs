//! The seeded random stream type. Weight initialisation and shuffling draw
//! from a [`Rng`] derived from the run's `--seed`, so a run repeats bit for
//! bit. Augmentation does not draw from a stream: each sample's crop and flip
//! are a hash of (seed, epoch, sample index) (see `data::augment`), so they do
//! not depend on the order in which batches are built.

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded ChaCha8 stream.
#[derive(Clone, Debug)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// The stream for `seed` and `purpose`. Different purposes (say, init and
    /// shuffling) get independent streams, so adding a layer does not change
    /// the order in which samples are drawn.
    pub fn new(seed: u64, purpose: u64) -> Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(purpose);
        Rng(rng)
    }

    /// A value drawn uniformly from `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.0.random::<f32>()
    }

    /// An integer drawn uniformly from `0..n`.
    ///
    /// # Panics
    ///
    /// When `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    /// Shuffles `values` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, values: &mut [T]) {
        values.shuffle(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(7, 1);
        let mut b = Rng::new(7, 1);
        let mut c = Rng::new(7, 2);
        let xs: Vec<f32> = (0..8).map(|_| a.uniform(-1.0, 1.0)).collect();
        let ys: Vec<f32> = (0..8).map(|_| b.uniform(-1.0, 1.0)).collect();
        let zs: Vec<f32> = (0..8).map(|_| c.uniform(-1.0, 1.0)).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().all(|x| (-1.0..1.0).contains(x)));
    }
}
