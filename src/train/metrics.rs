//! Classification metrics: top-k hits and the confusion matrix, counted in
//! integers so reported accuracies are exact.

use serde::Serialize;

use crate::tensor::argmax;

/// Whether `label` is among the `k` highest scores of `scores`: fewer than `k`
/// classes score strictly higher. A tie with the label counts in its favour.
pub fn in_top_k(scores: &[f32], label: usize, k: usize) -> bool {
    let target = scores[label];
    scores.iter().filter(|&&s| s > target).count() < k
}

/// The most classes a confusion matrix is kept for. Its counts grow with the
/// square of the classes: 1,000 classes take 8 MB, while one stray label
/// such as 60000 in a CSV file of digits would ask for 28 GB. Beyond it the
/// matrix is left out and the other counts are kept.
pub const MAX_CONFUSION_CLASSES: usize = 1000;

/// Counts of one evaluation: top-1 and top-5 hits, summed loss, and the
/// confusion matrix (row = true label, column = prediction) for up to
/// [`MAX_CONFUSION_CLASSES`] classes.
#[derive(Clone, Debug, Serialize)]
pub struct Tally {
    /// Number of classes.
    pub classes: usize,
    /// Samples seen.
    pub samples: usize,
    /// Samples whose argmax is the label (first maximum on ties, as `torch.argmax`).
    pub top1: usize,
    /// Samples whose label is among the five highest scores.
    pub top5: usize,
    /// Sum of per-sample losses.
    pub loss_sum: f64,
    /// `confusion[t * classes + p]` counts label `t` predicted as `p`; empty
    /// for more than [`MAX_CONFUSION_CLASSES`] classes.
    pub confusion: Vec<u64>,
}

impl Tally {
    /// An empty tally for `classes` classes, with a confusion matrix when
    /// there are at most [`MAX_CONFUSION_CLASSES`].
    pub fn new(classes: usize) -> Tally {
        let cells = if classes <= MAX_CONFUSION_CLASSES { classes * classes } else { 0 };
        Tally { classes, samples: 0, top1: 0, top5: 0, loss_sum: 0.0, confusion: vec![0; cells] }
    }

    /// Adds one sample's scores (logits or probabilities) and label.
    pub fn add(&mut self, scores: &[f32], label: usize) {
        let predicted = argmax(scores);
        self.samples += 1;
        self.top1 += usize::from(predicted == label);
        self.top5 += usize::from(in_top_k(scores, label, 5));
        if self.has_confusion() {
            self.confusion[label * self.classes + predicted] += 1;
        }
    }

    /// Whether the confusion matrix is kept (at most
    /// [`MAX_CONFUSION_CLASSES`] classes).
    pub fn has_confusion(&self) -> bool {
        self.classes <= MAX_CONFUSION_CLASSES
    }

    /// Fraction of top-1 hits, 0 to 1.
    pub fn accuracy(&self) -> f64 {
        self.top1 as f64 / self.samples.max(1) as f64
    }

    /// Fraction of top-5 hits, 0 to 1.
    pub fn top5_accuracy(&self) -> f64 {
        self.top5 as f64 / self.samples.max(1) as f64
    }

    /// Mean loss per sample.
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.samples.max(1) as f64
    }

    /// The confusion matrix as rows; `None` when it is not kept.
    pub fn confusion_rows(&self) -> Option<Vec<Vec<u64>>> {
        let rows = self.confusion.chunks(self.classes.max(1)).map(<[u64]>::to_vec).collect();
        self.has_confusion().then_some(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_counts_strictly_higher_scores() {
        let scores = [0.1, 0.5, 0.3, 0.5];
        assert!(!in_top_k(&scores, 0, 3));
        assert!(in_top_k(&scores, 2, 3));
        assert!(in_top_k(&scores, 3, 1));
        assert!(in_top_k(&scores, 0, 4));
    }

    #[test]
    fn tally_counts_and_confusion() {
        let mut tally = Tally::new(3);
        tally.add(&[2.0, 1.0, 0.0], 0);
        tally.add(&[2.0, 1.0, 0.0], 1);
        tally.add(&[0.0, 0.0, 1.0], 2);
        assert_eq!((tally.top1, tally.samples), (2, 3));
        let rows = vec![vec![1, 0, 0], vec![1, 0, 0], vec![0, 0, 1]];
        assert_eq!(tally.confusion_rows(), Some(rows));
    }

    #[test]
    fn many_classes_keep_no_confusion_matrix() {
        // 60,001 classes, from one label 60000, would need 28.8 GB of counts.
        let classes = 60_001;
        let mut tally = Tally::new(classes);
        assert_eq!(tally.confusion.capacity(), 0);
        let mut scores = vec![0.0; classes];
        scores[7] = 1.0;
        tally.add(&scores, 7);
        tally.add(&scores, 60_000);
        assert_eq!((tally.samples, tally.top1, tally.top5), (2, 1, 2));
        assert_eq!(tally.confusion_rows(), None);
        assert!(Tally::new(MAX_CONFUSION_CLASSES).confusion_rows().is_some());
    }
}
