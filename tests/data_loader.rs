//! The embedded digits and their fixed split, and the loader: seeded epoch
//! orders, batching, and normalised batches built without allocating.

use xent::data::{self, epoch_order, fill_batch, Batches, Dataset, Normalize};
use xent::Tensor;

/// Label counts of the UCI digits file, from its documentation.
const DIGITS_COUNTS: [usize; 10] = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];

#[test]
fn digits_rows_classes_and_pixels() {
    let ds = data::digits().expect("embedded digits parse");

    assert_eq!(ds.len(), 1797);
    assert_eq!(ds.name(), "digits");
    assert_eq!(ds.sample_shape(), [1, 8, 8]);
    assert_eq!(ds.max_value(), 16);
    assert_eq!(ds.class_counts(), DIGITS_COUNTS);
    assert_eq!(ds.classes()[7], "7");
    assert!(ds.images().iter().all(|&v| v <= 16));
    assert!(ds.images().contains(&16), "full intensity occurs");

    // First and last rows of the file, row-major.
    assert_eq!(&ds.image(0)[..16], &[0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0]);
    assert_eq!(ds.label(0), 0);
    assert_eq!(&ds.image(1796)[56..], &[0, 1, 8, 12, 14, 12, 1, 0]);
    assert_eq!(ds.label(1796), 8);
}

#[test]
fn digits_split_is_stratified_every_fifth() {
    let all = data::digits().expect("embedded digits parse");
    let split = data::load("digits").expect("digits need no files");

    // Each class puts floor(count / 5) samples in test.
    assert_eq!((split.train.len(), split.test.len()), (1442, 355));
    let test_counts: Vec<usize> = DIGITS_COUNTS.iter().map(|n| n / 5).collect();
    assert_eq!(split.test.class_counts(), test_counts);
    let train_counts: Vec<usize> = DIGITS_COUNTS.iter().map(|n| n - n / 5).collect();
    assert_eq!(split.train.class_counts(), train_counts);

    // Rebuild both parts by the documented rule and compare sample by sample.
    let mut seen = [0usize; 10];
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for i in 0..all.len() {
        let position = &mut seen[all.label(i) as usize];
        if *position % 5 == 4 { &mut test } else { &mut train }.push(i);
        *position += 1;
    }
    assert_eq!(split.test, all.subset(&test));
    assert_eq!(split.train, all.subset(&train));
}

#[test]
fn epoch_order_depends_on_seed_and_epoch_only() {
    let n = 1000;
    let order = epoch_order(n, 42, 3);

    assert_eq!(order, epoch_order(n, 42, 3));
    assert_ne!(order, epoch_order(n, 42, 4));
    assert_ne!(order, epoch_order(n, 43, 3));
    assert_ne!(order, (0..n).collect::<Vec<_>>());

    // A permutation: every index exactly once.
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..n).collect::<Vec<_>>());
    assert!(epoch_order(0, 42, 1).is_empty());
}

#[test]
fn batches_cover_an_epoch_once() {
    let split = data::digits_split().expect("embedded digits parse");
    let order = epoch_order(split.train.len(), 7, 1);
    let batches: Vec<&[usize]> = Batches::new(&order, 32).expect("size > 0").collect();

    // 1442 = 45 · 32 + 2: the short last batch is kept.
    assert_eq!(batches.len(), 46);
    assert_eq!(batches[45].len(), 2);
    let mut seen: Vec<usize> = batches.concat();
    assert_eq!(seen, order);
    seen.sort_unstable();
    assert_eq!(seen, (0..split.train.len()).collect::<Vec<_>>());
}

/// Two samples of 2 channels × 1 × 2 pixels, full intensity 255.
fn two_channel() -> Dataset {
    let images = vec![0, 255, 51, 102, 255, 0, 204, 153];
    Dataset::new("t", images, vec![1, 0], [2, 1, 2], data::numbered_classes(2), 255)
        .expect("valid dataset")
}

#[test]
fn fill_batch_writes_normalised_nchw() {
    let ds = two_channel();
    let norm = Normalize { mean: vec![0.5, 0.2], std: vec![0.25, 0.5] };
    let (mut x, mut targets) = (Tensor::default(), Vec::new());
    fill_batch(&ds, &[1, 0, 1], &norm, &mut x, &mut targets).expect("valid batch");

    // Channel 0: (v/255 − 0.5)/0.25; channel 1: (v/255 − 0.2)/0.5.
    assert_eq!(x.shape(), &[3, 2, 1, 2]);
    assert_eq!(targets, vec![0, 1, 0]);
    let want = [2.0, -2.0, 1.2, 0.8, -2.0, 2.0, 0.0, 0.4, 2.0, -2.0, 1.2, 0.8];
    for (got, want) in x.data().iter().zip(want) {
        assert!((got - want).abs() <= 1e-6, "{got} vs {want}");
    }

    // Exactly ToTensor then Normalize, operation by operation in f32.
    for (b, &i) in [1usize, 0, 1].iter().enumerate() {
        for (p, &v) in ds.image(i).iter().enumerate() {
            let c = p / 2;
            let want = (f32::from(v) / 255.0 - norm.mean[c]) / norm.std[c];
            assert_eq!(x.row(b)[p], want);
        }
    }
}

#[test]
fn fill_batch_reuses_its_buffers() {
    let split = data::digits_split().expect("embedded digits parse");
    let norm = Normalize::measure(&split.train);
    let (mut x, mut targets) = (Tensor::default(), Vec::new());
    fill_batch(&split.train, &[0, 1, 2, 3], &norm, &mut x, &mut targets).expect("valid batch");
    let (x_ptr, targets_ptr) = (x.data().as_ptr(), targets.as_ptr());

    // A smaller last batch, then a full one again, in the same buffers.
    fill_batch(&split.train, &[5, 6], &norm, &mut x, &mut targets).expect("valid batch");
    assert_eq!(x.shape(), &[2, 1, 8, 8]);
    fill_batch(&split.train, &[9, 8, 7, 6], &norm, &mut x, &mut targets).expect("valid batch");
    assert_eq!(x.shape(), &[4, 1, 8, 8]);
    assert_eq!(x.data().as_ptr(), x_ptr);
    assert_eq!(targets.as_ptr(), targets_ptr);
    assert_eq!(targets.len(), 4);
}

#[test]
fn measured_normalisation_centres_the_training_set() {
    let split = data::digits_split().expect("embedded digits parse");
    let norm = Normalize::measure(&split.train);
    let all: Vec<usize> = (0..split.train.len()).collect();
    let (mut x, mut targets) = (Tensor::default(), Vec::new());
    fill_batch(&split.train, &all, &norm, &mut x, &mut targets).expect("valid batch");

    // After normalisation the whole training set has mean 0 and std 1.
    let n = x.numel() as f64;
    let mean = x.data().iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x.data().iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 1e-5, "mean {mean}");
    assert!((var.sqrt() - 1.0).abs() < 1e-5, "std {}", var.sqrt());
    assert!(norm.mean[0] > 0.2 && norm.mean[0] < 0.4, "digits are mostly background");
}

#[test]
fn fill_batch_rejects_mismatches() {
    let ds = two_channel();
    let (mut x, mut targets) = (Tensor::default(), Vec::new());
    let err = fill_batch(&ds, &[0], &Normalize::identity(1), &mut x, &mut targets)
        .expect_err("one channel of normalisation for two");
    assert!(err.to_string().contains("1 means and 1 stds, but dataset t has 2 channels"));
    let err = fill_batch(&ds, &[0, 2], &Normalize::identity(2), &mut x, &mut targets)
        .expect_err("index past the end");
    assert!(err.to_string().contains("batch index 2 is outside dataset t (2 samples)"));
}

#[test]
fn take_gives_a_small_dataset_for_smoke_tests() {
    let split = data::digits_split().expect("embedded digits parse");
    let small = split.train.take(64);
    assert_eq!(small.len(), 64);
    assert_eq!(small.image(63), split.train.image(63));
    assert_eq!(small.labels(), &split.train.labels()[..64]);
}
