//! Datasets in memory, their readers, and the batch loader.
//!
//! A [`Dataset`] keeps its pixels as `u8`, image after image, each `[C, H, W]`
//! row-major; they become `f32` only when [`fill_batch`] or a training
//! [`Loader`] builds a batch (the latter applying any [`Augment`]). A
//! pixel of value `max_value` means full intensity (255 for MNIST, 16 for the
//! 8×8 digits), so `v / max_value` lies in `[0, 1]`.
//!
//! [`load`] takes a dataset name (`digits`, `mnist`, `fashion-mnist`,
//! `kmnist`, `cifar10`, `cifar100`), the path of a folder holding the four
//! MNIST-style IDX files or CIFAR `.bin` files, the path of an image folder
//! (see [`read_image_folder`]), or the path of a pixel CSV file. Named
//! datasets are read from `<data dir>/<name>/`; see [`data_dir`].
//! [`download()`] fetches them there. [`load_with`] takes import options and
//! returns what the import did; [`inspect`] audits a dataset without
//! training.

mod augment;
mod cifar;
mod csv;
mod digits;
mod download;
mod folder;
mod idx;
mod inspect;
mod loader;
mod named;
mod options;

pub use augment::{Augment, Placement, MAX_CROP_PAD};
pub use cifar::{
    cifar_folder, detect_cifar, read_cifar_file, read_cifar_split, CifarKind,
    CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES, CIFAR10_CLASSES, CIFAR_PIXELS, CIFAR_SIDE,
};
pub use csv::{
    holdout_split, is_csv_path, parse_pixel_csv, read_csv_split, read_pixel_csv, PixelCsv,
    MAX_CSV_LABEL,
};
pub use digits::{digits, digits_split, stratified_split, DIGITS_ROWS};
pub use download::{
    download, extract_tar_gz, fetch, file_url, resolve_mirrors, source, Digests, Event, RemoteFile,
    Source, MIRROR_ENV, SOURCES,
};
pub(crate) use folder::jpeg_header;
pub use folder::{is_image_folder, read_image_folder, read_test_folder, RESIZE_FILTER};
pub use idx::{read_idx_images, read_idx_labels, read_idx_split, IdxImages, IDX_FILES};
pub use inspect::{
    inspect, inspect_folder, inspect_split, ClassCount, FileNote, Inspection, Leak, SizeCount,
    SplitSummary,
};
pub use loader::{
    epoch_order, fill_batch, samples_per_epoch, Batch, BatchPlan, Batches, Loader, Normalize,
    SHUFFLE_STREAM,
};
pub use named::{
    class_names, data_dir, load, load_from, load_from_with, load_test_with, load_with,
    reads_as_image_folder, DATASETS,
};
pub use options::{ImportReport, LabelKind, LoadOptions};

use crate::{Error, Result};

/// Images as `u8` with one class label each.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    name: String,
    images: Vec<u8>,
    labels: Vec<u32>,
    shape: [usize; 3],
    classes: Vec<String>,
    max_value: u8,
}

/// The training and test parts of a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// Samples to learn from.
    pub train: Dataset,
    /// Held-out samples to evaluate on.
    pub test: Dataset,
}

impl Dataset {
    /// A dataset of `labels.len()` images of `shape = [c, h, w]`, stored one
    /// after the other in `images`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `images` does not hold exactly one image
    /// per label, when a label is not below `classes.len()`, or when
    /// `max_value` is 0.
    pub fn new(
        name: impl Into<String>,
        images: Vec<u8>,
        labels: Vec<u32>,
        shape: [usize; 3],
        classes: Vec<String>,
        max_value: u8,
    ) -> Result<Dataset> {
        let name = name.into();

        // The pixel buffer must be whole images, one per label.
        let sample_len: usize = shape.iter().product();
        if sample_len == 0 || images.len() != labels.len() * sample_len {
            return Err(Error::arg(format!(
                "dataset {name}: {} pixel values do not make {} images of shape {shape:?}",
                images.len(),
                labels.len()
            )));
        }

        // Labels index the class names; full intensity must be a positive value.
        if let Some((i, &label)) =
            labels.iter().enumerate().find(|&(_, &l)| l as usize >= classes.len())
        {
            return Err(Error::arg(format!(
                "dataset {name}: label {label} of sample {i} is outside 0..{} ({} classes)",
                classes.len(),
                classes.len()
            )));
        }
        if max_value == 0 {
            return Err(Error::arg(format!("dataset {name}: max_value must be above 0")));
        }

        Ok(Dataset { name, images, labels, shape, classes, max_value })
    }

    /// The dataset's name, e.g. `mnist`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset holds no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of sample `i`, `[c, h, w]` row-major.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let sample_len = self.sample_len();
        &self.images[i * sample_len..(i + 1) * sample_len]
    }

    /// Class index of sample `i`.
    ///
    /// # Panics
    ///
    /// When `i >= self.len()`.
    pub fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }

    /// Every image, one after the other.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// Every label, in sample order.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Shape of one sample, `[c, h, w]`.
    pub fn sample_shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Pixels per sample, `c * h * w`.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Class names; label `k` names `classes()[k]`.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The pixel value that means full intensity.
    pub fn max_value(&self) -> u8 {
        self.max_value
    }

    /// Number of samples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }

    /// The samples at `indices`, in that order (repeats allowed).
    ///
    /// # Panics
    ///
    /// When an index is not below `self.len()`.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.sample_len());
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Dataset { images, labels, ..self.empty_like() }
    }

    /// The first `n` samples, or all of them when there are fewer.
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        let images = self.images[..n * self.sample_len()].to_vec();
        let labels = self.labels[..n].to_vec();
        Dataset { images, labels, ..self.empty_like() }
    }

    /// Same name, shape, classes and scale, no samples.
    fn empty_like(&self) -> Dataset {
        Dataset {
            name: self.name.clone(),
            images: Vec::new(),
            labels: Vec::new(),
            shape: self.shape,
            classes: self.classes.clone(),
            max_value: self.max_value,
        }
    }
}

/// Class names `"0"`, `"1"`, ... for `n` classes.
pub fn numbered_classes(n: usize) -> Vec<String> {
    (0..n).map(|k| k.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        let images = (0..12).collect();
        Dataset::new("tiny", images, vec![0, 1, 1], [1, 2, 2], numbered_classes(2), 11)
            .expect("valid dataset")
    }

    #[test]
    fn accessors_see_one_sample() {
        let ds = tiny();
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.image(1), &[4, 5, 6, 7]);
        assert_eq!(ds.label(2), 1);
        assert_eq!(ds.sample_shape(), [1, 2, 2]);
        assert_eq!(ds.class_counts(), vec![1, 2]);
    }

    #[test]
    fn subset_and_take_copy_samples() {
        let ds = tiny();
        let sub = ds.subset(&[2, 0, 2]);
        assert_eq!(sub.len(), 3);
        assert_eq!(sub.image(0), &[8, 9, 10, 11]);
        assert_eq!(sub.image(1), &[0, 1, 2, 3]);
        assert_eq!(sub.labels(), &[1, 0, 1]);
        assert_eq!(ds.take(2).images(), &ds.images()[..8]);
        assert_eq!(ds.take(10).len(), 3);
    }

    #[test]
    fn new_rejects_inconsistent_parts() {
        let bad_len = Dataset::new("t", vec![0; 5], vec![0], [1, 2, 2], numbered_classes(2), 1);
        assert!(bad_len.unwrap_err().to_string().contains("5 pixel values"));
        let bad_label = Dataset::new("t", vec![0; 4], vec![2], [1, 2, 2], numbered_classes(2), 1);
        assert!(bad_label.unwrap_err().to_string().contains("label 2 of sample 0"));
        let bad_max = Dataset::new("t", vec![0; 4], vec![0], [1, 2, 2], numbered_classes(2), 0);
        assert!(bad_max.is_err());
    }
}
