//! The CIFAR-10 and CIFAR-100 binary readers on small files written here:
//! planar records, class names, the standard sub-folders, fine and coarse
//! labels, and a one-line error for each kind of bad file.

use std::fs;
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;
use xent::data::{self, LabelKind, LoadOptions};
use xent::Error;

/// Pixel `p` of plane `c` in a record made with `seed`.
fn pixel(seed: u8, c: usize, p: usize) -> u8 {
    (seed as usize * 31 + c * 7 + p) as u8
}

/// A record: the label bytes, then the R, G and B planes of 32×32.
fn record(labels: &[u8], seed: u8) -> Vec<u8> {
    let mut bytes = labels.to_vec();
    for c in 0..3 {
        bytes.extend((0..1024).map(|p| pixel(seed, c, p)));
    }
    bytes
}

/// A CIFAR-10 folder: five training files of `per_file` records and a test
/// file of 2; record `i` of file `f` has label `(f + i) % 10` and seed `10 f + i`.
fn write_cifar10(dir: &Path, per_file: usize) {
    fs::create_dir_all(dir).unwrap();
    let files = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin"].into_iter().chain([
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ]);
    for (f, name) in files.enumerate() {
        let count = if f == 5 { 2 } else { per_file };
        let bytes: Vec<u8> =
            (0..count).flat_map(|i| record(&[((f + i) % 10) as u8], (10 * f + i) as u8)).collect();
        fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A CIFAR-100 folder: 4 training records and 2 test records, record `i`
/// with coarse label `i % 20` and fine label `(5 i + 3) % 100`.
fn write_cifar100(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let records = |n: usize| -> Vec<u8> {
        (0..n).flat_map(|i| record(&[(i % 20) as u8, (5 * i + 3) as u8], i as u8)).collect()
    };
    fs::write(dir.join("train.bin"), records(4)).unwrap();
    fs::write(dir.join("test.bin"), records(2)).unwrap();
}

fn load(dir: &Path) -> xent::Result<data::Split> {
    data::load_from(&dir.to_string_lossy(), Path::new("/unused"))
}

fn load_labels(dir: &Path, labels: LabelKind) -> xent::Result<data::Split> {
    let options = LoadOptions { labels, ..Default::default() };
    data::load_from_with(&dir.to_string_lossy(), Path::new("/unused"), &options).map(|(s, _)| s)
}

#[test]
fn cifar10_records_are_planar_images_in_file_order() {
    let root = TempDir::new().unwrap();
    write_cifar10(root.path(), 3);
    let split = load(root.path()).expect("valid CIFAR-10 folder");

    assert_eq!((split.train.len(), split.test.len()), (15, 2));
    assert_eq!(split.train.sample_shape(), [3, 32, 32]);
    assert_eq!(split.train.max_value(), 255);
    assert_eq!(split.train.classes()[0], "airplane");
    assert_eq!(split.test.classes()[9], "truck");

    // Record 1 of data_batch_2 is training sample 4: label (1 + 1) % 10, seed 11.
    assert_eq!(split.train.label(4), 2);
    let image = split.train.image(4);
    assert_eq!(image[0], pixel(11, 0, 0));
    assert_eq!(image[1024 + 33], pixel(11, 1, 33));
    assert_eq!(image[2 * 1024 + 1023], pixel(11, 2, 1023));
    assert_eq!(split.test.labels(), &[5, 6]);
}

#[test]
fn cifar10_by_name_in_its_sub_folder_with_its_class_names() {
    let root = TempDir::new().unwrap();
    let folder = root.path().join("cifar10").join("cifar-10-batches-bin");
    write_cifar10(&folder, 1);
    let names = "plane\ncar\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    fs::write(folder.join("batches.meta.txt"), names).unwrap();

    let split = data::load_from("cifar10", root.path()).expect("valid CIFAR-10 folder");
    assert_eq!(split.train.len(), 5);
    assert_eq!(split.train.name(), "cifar10");
    assert_eq!(&split.train.classes()[..2], ["plane", "car"]);

    fs::write(folder.join("batches.meta.txt"), "plane\ncar\n").unwrap();
    let msg = data::load_from("cifar10", root.path()).unwrap_err().to_string();
    assert!(msg.contains("batches.meta.txt: lists 2 class names, expected 10"), "{msg}");
}

#[test]
fn cifar100_fine_or_coarse_labels() {
    let root = TempDir::new().unwrap();
    let folder = root.path().join("cifar-100-binary");
    write_cifar100(&folder);

    let fine = load_labels(root.path(), LabelKind::Fine).expect("valid CIFAR-100 folder");
    assert_eq!(fine.train.labels(), &[3, 8, 13, 18]);
    assert_eq!(fine.train.classes().len(), 100);
    assert_eq!(fine.train.classes()[3], "bear");
    assert_eq!(fine.train.image(2)[5], pixel(2, 0, 5));

    let names: String = (0..20).map(|k| format!("super{k}\n")).collect();
    fs::write(folder.join("coarse_label_names.txt"), names).unwrap();
    let coarse = load_labels(root.path(), LabelKind::Coarse).expect("valid CIFAR-100 folder");
    assert_eq!(coarse.train.labels(), &[0, 1, 2, 3]);
    assert_eq!(coarse.test.labels(), &[0, 1]);
    assert_eq!(coarse.train.classes().len(), 20);
    assert_eq!(coarse.train.classes()[2], "super2");
    assert_eq!(coarse.train.images(), fine.train.images());
}

#[test]
fn a_file_of_partial_records_is_refused_with_the_arithmetic() {
    let root = TempDir::new().unwrap();
    write_cifar10(root.path(), 2);
    let path = root.path().join("data_batch_3.bin");
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[1, 2, 3, 4, 5]);
    fs::write(&path, bytes).unwrap();

    let err = load(root.path()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::InvalidData { .. }), "{msg}");
    assert!(msg.contains("data_batch_3.bin: file is 6151 bytes"), "{msg}");
    assert!(msg.contains("3073-byte CIFAR-10 records"), "{msg}");
    assert!(msg.contains("2 whole records and 5 leftover bytes"), "{msg}");
}

#[test]
fn a_label_out_of_range_names_file_record_and_value() {
    let root = TempDir::new().unwrap();
    write_cifar10(root.path(), 1);
    let mut bytes = record(&[0], 0);
    bytes.extend(record(&[10], 1));
    fs::write(root.path().join("test_batch.bin"), bytes).unwrap();
    let msg = load(root.path()).unwrap_err().to_string();
    assert!(msg.contains("test_batch.bin: record 1: label 10 is outside 0..=9"), "{msg}");

    // CIFAR-100 checks both label bytes, whichever is used.
    let root = TempDir::new().unwrap();
    write_cifar100(root.path());
    fs::write(root.path().join("test.bin"), record(&[1, 100], 0)).unwrap();
    let msg = load_labels(root.path(), LabelKind::Coarse).unwrap_err().to_string();
    assert!(msg.contains("test.bin: record 0: fine label 100 is outside 0..=99"), "{msg}");
}

#[test]
fn missing_files_are_listed_with_where_and_the_download_command() {
    let root = TempDir::new().unwrap();
    write_cifar10(root.path(), 1);
    fs::remove_file(root.path().join("data_batch_2.bin")).unwrap();
    fs::remove_file(root.path().join("test_batch.bin")).unwrap();
    let err = load(root.path()).unwrap_err();
    let Error::DatasetMissing { ref missing, ref dir, .. } = err else {
        panic!("expected missing files, got {err}");
    };
    assert_eq!(missing, &["data_batch_2.bin", "test_batch.bin"]);
    assert_eq!(dir, root.path());
    assert!(err.hint().unwrap().contains("xent data download cifar10"));

    // By name, from an empty data folder.
    let empty = TempDir::new().unwrap();
    let err = data::load_from("cifar10", empty.path()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("data_batch_1.bin, data_batch_2.bin"), "{msg}");
    assert!(msg.contains(&empty.path().join("cifar10").display().to_string()), "{msg}");
    assert!(err.hint().unwrap().contains("run `xent data download cifar10`"));
}

#[test]
fn an_empty_file_is_refused() {
    let root = TempDir::new().unwrap();
    write_cifar100(root.path());
    fs::write(root.path().join("train.bin"), b"").unwrap();
    let msg = load(root.path()).unwrap_err().to_string();
    assert!(
        msg.contains("train.bin: file is empty; expected 3074-byte CIFAR-100 records"),
        "{msg}"
    );
}

#[test]
fn train_takes_coarse_labels_from_the_command_line() {
    let root = TempDir::new().unwrap();
    write_cifar100(&root.path().join("cifar100"));
    let run = root.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(["train", "--dataset", "cifar100", "--labels", "coarse", "--model", "linear"])
        .args(["--epochs", "1", "--schedule", "constant", "--quiet", "--out"])
        .arg(&run)
        .env("XENT_DATA", root.path())
        .output()
        .expect("the xent binary runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model = xent::io::Model::load(&run).expect("a model was saved");
    assert_eq!(model.info.classes.len(), 20);
    assert_eq!(model.info.input_shape, [3, 32, 32]);
}

#[test]
fn coarse_labels_are_refused_for_cifar10() {
    let root = TempDir::new().unwrap();
    write_cifar10(root.path(), 1);
    let err = load_labels(root.path(), LabelKind::Coarse).unwrap_err();
    assert!(matches!(err, xent::Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("--labels coarse applies to CIFAR-100 only"), "{err}");
}
