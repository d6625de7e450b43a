//! CIFAR-10 and CIFAR-100 in their binary versions ("suitable for C
//! programs").
//!
//! A file is a run of fixed-size records: the label byte(s), then 3072 pixel
//! bytes, 1024 red, 1024 green, 1024 blue, each plane 32×32 row-major. That
//! is planar `[c, h, w]` with `c = 3`, xent's own layout, so a record's pixels
//! are copied as they are. CIFAR-10 records carry one label byte (0..=9);
//! CIFAR-100 records carry the coarse label (0..=19), then the fine label
//! (0..=99).
//!
//! A. Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*,
//! University of Toronto, 2009.

use super::{Dataset, LabelKind, Split};
use crate::{Error, Result};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Side of a CIFAR image, in pixels.
pub const CIFAR_SIDE: usize = 32;

/// Pixel bytes per CIFAR record: 3 planes of 32×32.
pub const CIFAR_PIXELS: usize = 3 * CIFAR_SIDE * CIFAR_SIDE;

/// CIFAR-10's classes, in label order.
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// CIFAR-100's 20 coarse classes (superclasses), in label order.
pub const CIFAR100_COARSE_CLASSES: [&str; 20] = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

/// CIFAR-100's 100 fine classes, in label order.
#[rustfmt::skip]
pub const CIFAR100_FINE_CLASSES: [&str; 100] = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
];

/// Which of the two CIFAR datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarKind {
    /// 10 classes; five training files and one test file.
    Cifar10,
    /// 100 fine classes in 20 coarse ones; one training and one test file.
    Cifar100,
}

impl CifarKind {
    /// The kind named `cifar10` or `cifar100`.
    pub fn from_name(name: &str) -> Option<CifarKind> {
        match name {
            "cifar10" => Some(CifarKind::Cifar10),
            "cifar100" => Some(CifarKind::Cifar100),
            _ => None,
        }
    }

    /// The dataset name, `cifar10` or `cifar100`.
    pub fn name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar10",
            CifarKind::Cifar100 => "cifar100",
        }
    }

    /// The training files, read in this order.
    pub fn train_files(self) -> &'static [&'static str] {
        match self {
            CifarKind::Cifar10 => &[
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
            ],
            CifarKind::Cifar100 => &["train.bin"],
        }
    }

    /// The test file.
    pub fn test_file(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "test_batch.bin",
            CifarKind::Cifar100 => "test.bin",
        }
    }

    /// Every data file: the training files, then the test file.
    pub fn data_files(self) -> Vec<&'static str> {
        let mut files = self.train_files().to_vec();
        files.push(self.test_file());
        files
    }

    /// The files of class names that may sit beside the data files.
    pub fn name_files(self) -> &'static [&'static str] {
        match self {
            CifarKind::Cifar10 => &["batches.meta.txt"],
            CifarKind::Cifar100 => &["fine_label_names.txt", "coarse_label_names.txt"],
        }
    }

    /// The folder the published archive unpacks to, also looked in.
    pub fn subfolder(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar-10-batches-bin",
            CifarKind::Cifar100 => "cifar-100-binary",
        }
    }

    /// Label bytes at the start of each record.
    pub fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }

    /// Bytes per record: label bytes and pixels.
    pub fn record_len(self) -> usize {
        self.label_bytes() + CIFAR_PIXELS
    }

    /// Records in `file` of the published dataset (10,000 per CIFAR-10 file
    /// and in the CIFAR-100 test file, 50,000 in the CIFAR-100 training file).
    pub fn published_records(self, file: &str) -> usize {
        if self == CifarKind::Cifar100 && file == "train.bin" {
            50_000
        } else {
            10_000
        }
    }

    /// The class names file and the standard names for `labels`.
    fn class_source(self, labels: LabelKind) -> (&'static str, &'static [&'static str]) {
        match (self, labels) {
            (CifarKind::Cifar10, _) => ("batches.meta.txt", &CIFAR10_CLASSES),
            (CifarKind::Cifar100, LabelKind::Fine) => {
                ("fine_label_names.txt", &CIFAR100_FINE_CLASSES)
            }
            (CifarKind::Cifar100, LabelKind::Coarse) => {
                ("coarse_label_names.txt", &CIFAR100_COARSE_CLASSES)
            }
        }
    }
}

/// The folder of `dir` that holds `kind`'s files: `dir` itself when it holds
/// any of them, else its standard sub-folder when that does.
pub fn cifar_folder(dir: &Path, kind: CifarKind) -> Option<PathBuf> {
    let holds = |folder: &Path| kind.data_files().iter().any(|f| folder.join(f).is_file());
    [dir.to_path_buf(), dir.join(kind.subfolder())].into_iter().find(|folder| holds(folder))
}

/// Which CIFAR dataset `dir` (or its standard sub-folder) holds, if any.
pub fn detect_cifar(dir: &Path) -> Option<CifarKind> {
    [CifarKind::Cifar10, CifarKind::Cifar100].into_iter().find(|&k| cifar_folder(dir, k).is_some())
}

/// Reads a CIFAR dataset from `dir` or its standard sub-folder as a split
/// named `name`, with `max_value` 255 and images of `[3, 32, 32]`.
///
/// `labels` picks CIFAR-100's fine or coarse classes; CIFAR-10 ignores it.
/// Class names come from `batches.meta.txt` (CIFAR-10) or
/// `fine_label_names.txt` / `coarse_label_names.txt` (CIFAR-100) when
/// present, else the standard lists.
///
/// # Errors
///
/// [`Error::DatasetMissing`] naming the absent data files; otherwise as
/// [`read_cifar_file`], and [`Error::InvalidData`] for a names file that
/// does not list one name per class.
pub fn read_cifar_split(
    dir: &Path,
    name: &str,
    kind: CifarKind,
    labels: LabelKind,
) -> Result<Split> {
    // Every data file must be in one folder; list all that are absent.
    let folder = cifar_folder(dir, kind).unwrap_or_else(|| dir.to_path_buf());
    let missing: Vec<String> = kind
        .data_files()
        .into_iter()
        .filter(|f| !folder.join(f).is_file())
        .map(str::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(Error::DatasetMissing { name: name.into(), dir: folder, missing });
    }

    // Class names, then the training files in order and the test file.
    let classes = class_names(&folder, kind, labels)?;
    let (mut images, mut targets) = (Vec::new(), Vec::new());
    for file in kind.train_files() {
        let (pixels, file_labels) = read_cifar_file(&folder.join(file), kind, labels)?;
        images.extend_from_slice(&pixels);
        targets.extend_from_slice(&file_labels);
    }
    let shape = [3, CIFAR_SIDE, CIFAR_SIDE];
    let train = Dataset::new(name, images, targets, shape, classes.clone(), 255)?;
    let (pixels, test_labels) = read_cifar_file(&folder.join(kind.test_file()), kind, labels)?;
    let test = Dataset::new(name, pixels, test_labels, shape, classes, 255)?;
    Ok(Split { train, test })
}

/// Reads one CIFAR binary file: the pixels of every record, one image after
/// the other, and the label `labels` picks (the fine one for CIFAR-100
/// unless [`LabelKind::Coarse`]).
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be read; [`Error::InvalidData`] when
/// it is empty or not a whole number of records; [`Error::InvalidRecord`]
/// naming the first label outside its range (both labels are checked for
/// CIFAR-100).
pub fn read_cifar_file(
    path: &Path,
    kind: CifarKind,
    labels: LabelKind,
) -> Result<(Vec<u8>, Vec<u32>)> {
    // The length alone tells whether the file is whole records.
    let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let len = file.metadata().map_err(|e| Error::io("reading", path, e))?.len();
    let record_len = kind.record_len();
    let what = format!(
        "{record_len}-byte {} records ({} label byte{} + {CIFAR_PIXELS} pixels)",
        if kind == CifarKind::Cifar10 { "CIFAR-10" } else { "CIFAR-100" },
        kind.label_bytes(),
        if kind.label_bytes() == 1 { "" } else { "s" }
    );
    if len == 0 {
        return Err(Error::invalid(path, format!("file is empty; expected {what}")));
    }
    let (whole, leftover) = (len / record_len as u64, len % record_len as u64);
    if leftover != 0 {
        return Err(Error::invalid(
            path,
            format!(
                "file is {len} bytes, not a whole number of {what}: {whole} whole records \
                 and {leftover} leftover bytes"
            ),
        ));
    }

    // Record by record: check the label bytes, keep the pixels as they are.
    let count = usize::try_from(whole).map_err(|_| Error::invalid(path, "file is too large"))?;
    let mut pixels = Vec::with_capacity(count * CIFAR_PIXELS);
    let mut targets = Vec::with_capacity(count);
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut record = vec![0u8; record_len];
    for i in 0..count {
        reader.read_exact(&mut record).map_err(|e| Error::io("reading", path, e))?;
        let label = check_labels(path, i, kind, labels, &record[..kind.label_bytes()])?;
        targets.push(label);
        pixels.extend_from_slice(&record[kind.label_bytes()..]);
    }
    Ok((pixels, targets))
}

/// Checks the label bytes of record `i` and returns the one `labels` picks.
fn check_labels(
    path: &Path,
    i: usize,
    kind: CifarKind,
    labels: LabelKind,
    bytes: &[u8],
) -> Result<u32> {
    let bad = |which: &str, value: u8, classes: usize| Error::InvalidRecord {
        path: path.to_path_buf(),
        record: i,
        detail: format!("{which}{value} is outside 0..={} ({classes} classes)", classes - 1),
    };
    match kind {
        CifarKind::Cifar10 => match bytes[0] {
            v if usize::from(v) < CIFAR10_CLASSES.len() => Ok(u32::from(v)),
            v => Err(bad("label ", v, CIFAR10_CLASSES.len())),
        },
        CifarKind::Cifar100 => {
            let (coarse, fine) = (bytes[0], bytes[1]);
            if usize::from(coarse) >= CIFAR100_COARSE_CLASSES.len() {
                return Err(bad("coarse label ", coarse, CIFAR100_COARSE_CLASSES.len()));
            }
            if usize::from(fine) >= CIFAR100_FINE_CLASSES.len() {
                return Err(bad("fine label ", fine, CIFAR100_FINE_CLASSES.len()));
            }
            Ok(u32::from(if labels == LabelKind::Coarse { coarse } else { fine }))
        }
    }
}

/// The class names for `labels`: from the names file in `folder` when there
/// is one, else the standard list.
fn class_names(folder: &Path, kind: CifarKind, labels: LabelKind) -> Result<Vec<String>> {
    let (file, standard) = kind.class_source(labels);
    let path = folder.join(file);
    if !path.is_file() {
        return Ok(standard.iter().map(|s| s.to_string()).collect());
    }

    // One name per line; the published files end in blank lines.
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("reading", &path, e))?;
    let names: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    if names.len() != standard.len() {
        return Err(Error::invalid(
            &path,
            format!(
                "lists {} class names, expected {} (one per line, in label order)",
                names.len(),
                standard.len()
            ),
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_per_kind() {
        assert_eq!(CifarKind::Cifar10.record_len(), 3073);
        assert_eq!(CifarKind::Cifar100.record_len(), 3074);
        assert_eq!(CifarKind::Cifar10.data_files().len(), 6);
        assert_eq!(CifarKind::Cifar100.data_files(), vec!["train.bin", "test.bin"]);
        assert_eq!(CifarKind::from_name("cifar100"), Some(CifarKind::Cifar100));
        assert_eq!(CifarKind::Cifar100.published_records("train.bin"), 50_000);
    }

    #[test]
    fn labels_are_checked_and_picked() {
        let path = Path::new("t.bin");
        let pick = |kind, labels, bytes: &[u8]| check_labels(path, 3, kind, labels, bytes);
        assert_eq!(pick(CifarKind::Cifar10, LabelKind::Fine, &[9]).expect("in range"), 9);
        assert_eq!(pick(CifarKind::Cifar100, LabelKind::Fine, &[4, 72]).expect("in range"), 72);
        assert_eq!(pick(CifarKind::Cifar100, LabelKind::Coarse, &[4, 72]).expect("in range"), 4);
        let msg = pick(CifarKind::Cifar10, LabelKind::Fine, &[10]).unwrap_err().to_string();
        assert_eq!(msg, "t.bin: record 3: label 10 is outside 0..=9 (10 classes)");
        let msg = pick(CifarKind::Cifar100, LabelKind::Fine, &[20, 0]).unwrap_err().to_string();
        assert!(msg.contains("coarse label 20 is outside 0..=19"), "{msg}");
        let msg = pick(CifarKind::Cifar100, LabelKind::Coarse, &[0, 100]).unwrap_err().to_string();
        assert!(msg.contains("fine label 100 is outside 0..=99"), "{msg}");
    }

    #[test]
    fn standard_names_have_the_published_counts() {
        assert_eq!(CIFAR100_FINE_CLASSES.len(), 100);
        assert_eq!(CIFAR100_FINE_CLASSES[99], "worm");
        assert_eq!(CIFAR100_COARSE_CLASSES[12], "medium_mammals");
        assert_eq!(CIFAR10_CLASSES[0], "airplane");
    }
}
