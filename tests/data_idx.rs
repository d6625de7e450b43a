//! The IDX reader on files written here, good and bad, and on the real MNIST
//! when `$XENT_DATA` holds it. Every bad file must give a one-line error that
//! names the file and what was expected, never a panic.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use xent::data::{self, read_idx_images, read_idx_labels, Normalize, IDX_FILES};
use xent::Error;

/// An IDX image file of `count` images of `h`×`w`, pixel `p` of image `i` =
/// `i + p` (mod 256).
fn image_file(count: u32, h: u32, w: u32) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, 3];
    for d in [count, h, w] {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    let len = (h * w) as usize;
    for i in 0..count as usize {
        bytes.extend((0..len).map(|p| (i + p) as u8));
    }
    bytes
}

/// An IDX label file.
fn label_file(labels: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, 1];
    bytes.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    bytes.extend_from_slice(labels);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("writing into the temp dir");
    path
}

/// A folder with a valid small dataset: 5 training and 3 test images of 2×3.
fn valid_dataset() -> TempDir {
    let dir = TempDir::new().expect("temp dir");
    write(dir.path(), IDX_FILES[0], &image_file(5, 2, 3));
    write(dir.path(), IDX_FILES[1], &label_file(&[0, 1, 2, 9, 1]));
    write(dir.path(), &format!("{}.gz", IDX_FILES[2]), &gzip(&image_file(3, 2, 3)));
    write(dir.path(), &format!("{}.gz", IDX_FILES[3]), &gzip(&label_file(&[4, 4, 0])));
    dir
}

/// The error's message, checked to be one line that names `file`.
fn message(err: Error, file: &Path) -> String {
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "message is not one line: {msg}");
    assert!(msg.contains(&*file.to_string_lossy()), "message does not name {file:?}: {msg}");
    msg
}

fn images_error(bytes: &[u8]) -> String {
    let dir = TempDir::new().expect("temp dir");
    let path = write(dir.path(), "images", bytes);
    message(read_idx_images(&path).expect_err("bad image file must fail"), &path)
}

fn labels_error(bytes: &[u8]) -> String {
    let dir = TempDir::new().expect("temp dir");
    let path = write(dir.path(), "labels", bytes);
    message(read_idx_labels(&path, 10).expect_err("bad label file must fail"), &path)
}

#[test]
fn reads_raw_and_gzip_files() {
    let dir = valid_dataset();
    let split = data::load_from(&dir.path().to_string_lossy(), Path::new("/unused"))
        .expect("valid dataset");

    assert_eq!((split.train.len(), split.test.len()), (5, 3));
    assert_eq!(split.train.sample_shape(), [1, 2, 3]);
    assert_eq!(split.train.image(2), &[2, 3, 4, 5, 6, 7]);
    assert_eq!(split.train.labels(), &[0, 1, 2, 9, 1]);
    assert_eq!(split.test.image(1), &[1, 2, 3, 4, 5, 6]);
    assert_eq!(split.test.labels(), &[4, 4, 0]);
    assert_eq!(split.train.max_value(), 255);
    assert_eq!(split.train.classes()[9], "9");
}

#[test]
fn gzip_is_detected_by_content_not_name() {
    let dir = TempDir::new().expect("temp dir");
    let path = write(dir.path(), "images.idx", &gzip(&image_file(2, 1, 4)));
    let idx = read_idx_images(&path).expect("gzip under a raw name");
    assert_eq!((idx.count, idx.h, idx.w), (2, 1, 4));
    assert_eq!(idx.pixels, vec![0, 1, 2, 3, 1, 2, 3, 4]);
}

#[test]
fn named_dataset_is_read_from_the_data_dir() {
    let root = TempDir::new().expect("temp dir");
    let valid = valid_dataset();
    std::fs::rename(valid.path(), root.path().join("fashion-mnist")).expect("move into place");
    let split = data::load_from("fashion-mnist", root.path()).expect("valid dataset");
    assert_eq!(split.train.name(), "fashion-mnist");
    assert_eq!(split.train.classes()[0], "T-shirt/top");
    assert_eq!(split.test.len(), 3);
}

#[test]
fn wrong_magic_number() {
    let mut bytes = image_file(2, 2, 2);
    bytes[..4].copy_from_slice(b"GIF8");
    let msg = images_error(&bytes);
    assert!(msg.contains("magic number 0x00000803"), "{msg}");
    assert!(msg.contains("found bytes 47 49 46 38"), "{msg}");
}

#[test]
fn label_file_where_images_are_expected() {
    let msg = images_error(&label_file(&[1, 2]));
    assert!(msg.contains("found one with 1 dimensions (magic number 0x00000801)"), "{msg}");
}

#[test]
fn little_endian_header() {
    let mut bytes = vec![3, 8, 0, 0];
    for d in [2u32, 2, 2] {
        bytes.extend_from_slice(&d.to_le_bytes());
    }
    bytes.extend_from_slice(&[0; 8]);
    let msg = images_error(&bytes);
    assert!(msg.contains("header looks little-endian"), "{msg}");
    assert!(msg.contains("03 08 00 00"), "{msg}");

    let msg = labels_error(&[1, 8, 0, 0, 2, 0, 0, 0, 0, 1]);
    assert!(msg.contains("header looks little-endian"), "{msg}");
}

#[test]
fn file_cut_short_mid_image() {
    // 4 images of 3×3 promised (36 bytes), 2 whole images and 4 bytes present.
    let mut bytes = image_file(4, 3, 3);
    bytes.truncate(16 + 22);
    let msg = images_error(&bytes);
    assert!(msg.contains("promises 4 images of 3×3 (36 bytes after the 16-byte header)"), "{msg}");
    assert!(msg.contains("found 22 bytes: 2 whole images, then 4 bytes of image 2"), "{msg}");

    let msg = images_error(&gzip(&bytes));
    assert!(msg.contains("found 22 bytes after decompression"), "{msg}");
}

#[test]
fn header_cut_short() {
    let msg = images_error(&image_file(1, 2, 2)[..10]);
    assert!(msg.contains("header is cut short"), "{msg}");
    assert!(msg.contains("expected 12 bytes of dimensions"), "{msg}");
}

#[test]
fn empty_file() {
    let msg = images_error(&[]);
    assert!(msg.contains("file is empty; expected an IDX image file"), "{msg}");
    let msg = labels_error(&gzip(&[]));
    assert!(msg.contains("file is empty after decompression"), "{msg}");
}

#[test]
fn trailing_bytes() {
    let mut bytes = label_file(&[1, 2, 3]);
    bytes.extend_from_slice(&[7, 7]);
    let msg = labels_error(&bytes);
    assert!(msg.contains("2 extra bytes after the last label"), "{msg}");
    assert!(msg.contains("exactly 3 bytes after the 8-byte header"), "{msg}");
}

#[test]
fn corrupt_gzip() {
    // Damage the deflate stream in the middle of the compressed file.
    let mut bytes = gzip(&image_file(50, 8, 8));
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0x5a;
    }
    let msg = images_error(&bytes);
    assert!(msg.contains("gzip data is corrupt or cut short"), "{msg}");

    // A gzip file that stops early is reported the same way.
    let bytes = gzip(&image_file(50, 8, 8));
    let msg = images_error(&bytes[..bytes.len() / 2]);
    assert!(msg.contains("gzip data is corrupt or cut short"), "{msg}");
}

#[test]
fn label_outside_class_range() {
    let msg = labels_error(&label_file(&[0, 3, 12, 4]));
    assert!(msg.contains("record 2: label 12 is outside 0..=9 (10 classes)"), "{msg}");
    assert!(!msg.contains("1-based"), "{msg}");
}

#[test]
fn one_based_labels_are_named() {
    let msg = labels_error(&label_file(&[1, 10, 5, 2]));
    assert!(msg.contains("record 1: label 10 is outside 0..=9"), "{msg}");
    assert!(msg.contains("the labels run 1..=10, so they look 1-based"), "{msg}");
}

#[test]
fn image_and_label_counts_differ() {
    let dir = valid_dataset();
    let labels = write(dir.path(), IDX_FILES[1], &label_file(&[0, 1, 2, 3]));
    let images = dir.path().join(IDX_FILES[0]);
    let err = data::load_from(&dir.path().to_string_lossy(), Path::new("/unused"))
        .expect_err("5 images with 4 labels must fail");
    let msg = message(err, &images);
    assert!(msg.contains(&*labels.to_string_lossy()), "{msg}");
    assert!(msg.contains("holds 5 images but"), "{msg}");
    assert!(msg.contains("holds 4 labels"), "{msg}");
}

#[test]
fn test_images_of_another_size() {
    let dir = valid_dataset();
    let test_images = write(dir.path(), &format!("{}.gz", IDX_FILES[2]), &image_file(3, 3, 2));
    let err = data::load_from(&dir.path().to_string_lossy(), Path::new("/unused"))
        .expect_err("3×2 test images with 2×3 training images must fail");
    let msg = message(err, &test_images);
    assert!(msg.contains("images are 3×2 but the training images"), "{msg}");
}

#[test]
fn dataset_files_missing() {
    let root = TempDir::new().expect("temp dir");
    let dir = root.path().join("kmnist");
    std::fs::create_dir(&dir).expect("create dataset folder");
    write(&dir, IDX_FILES[1], &label_file(&[0]));
    write(&dir, &format!("{}.gz", IDX_FILES[3]), &gzip(&label_file(&[0])));

    let err = data::load_from("kmnist", root.path()).expect_err("images are missing");
    match &err {
        Error::DatasetMissing { name, dir: where_, missing } => {
            assert_eq!(name, "kmnist");
            assert_eq!(where_, &dir);
            assert_eq!(missing, &[IDX_FILES[0], IDX_FILES[2]]);
        }
        other => panic!("expected DatasetMissing, found {other:?}"),
    }
    let hint = err.hint().expect("DatasetMissing has a hint");
    assert!(hint.contains("XENT_DATA"), "{hint}");
    message(err, &dir);
}

#[test]
fn folder_path_that_does_not_exist() {
    let root = TempDir::new().expect("temp dir");
    let dir = root.path().join("nowhere");
    let err = data::load(&dir.to_string_lossy()).expect_err("no such folder");
    assert!(matches!(err, Error::InvalidData { ref path, .. } if *path == dir), "{err}");
    assert!(err.to_string().ends_with("no such file or folder"), "{err}");
}

/// Real MNIST from `$XENT_DATA/mnist`: counts, size, classes, and the
/// familiar normalisation constants 0.1307 and 0.3081 (population std
/// over all training pixels).
#[test]
fn real_mnist() {
    let Some(root) = std::env::var_os("XENT_DATA").map(PathBuf::from) else {
        println!("skipped: XENT_DATA is not set, so the real MNIST cannot be read");
        return;
    };
    if !root.join("mnist").is_dir() {
        println!("skipped: {} holds no mnist folder", root.display());
        return;
    }

    let start = std::time::Instant::now();
    let split = data::load_from("mnist", &root).expect("real MNIST reads");
    println!("read MNIST in {:.3} s", start.elapsed().as_secs_f64());
    assert_eq!((split.train.len(), split.test.len()), (60_000, 10_000));
    assert_eq!(split.train.sample_shape(), [1, 28, 28]);
    assert_eq!(split.test.sample_shape(), [1, 28, 28]);
    let want = vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
    assert_eq!(split.train.class_counts(), want);
    let want = vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];
    assert_eq!(split.test.class_counts(), want);

    let norm = Normalize::measure(&split.train);
    assert!((norm.mean[0] - 0.130_660_5).abs() < 1e-6, "mean {}", norm.mean[0]);
    assert!((norm.std[0] - 0.308_107_8).abs() < 1e-6, "std {}", norm.std[0]);
}
