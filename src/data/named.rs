//! Datasets by name, the data directory they live in, and their class names.
//!
//! The data directory is `$XENT_DATA` when set, else `xent` under the
//! platform cache directory (`$XDG_CACHE_HOME/xent` or `~/.cache/xent` on
//! Linux). A named dataset `mnist` is read from `<data dir>/mnist/`.

use super::cifar::{detect_cifar, read_cifar_split, CifarKind};
use super::cifar::{CIFAR100_FINE_CLASSES, CIFAR10_CLASSES};
use super::csv::{is_csv_path, read_csv_split_with};
use super::folder::{has_test_folder, is_image_folder, read_image_folder, read_test_folder};
use super::{
    digits_split, idx::read_idx_split, numbered_classes, Dataset, ImportReport, LabelKind,
    LoadOptions, Split,
};
use crate::{Error, Result};
use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The dataset names [`load`] knows.
pub const DATASETS: [&str; 6] =
    ["digits", "mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100"];

/// Fashion-MNIST's classes, in label order.
const FASHION_MNIST: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// KMNIST's classes: the romanised hiragana, in label order.
const KMNIST: [&str; 10] = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"];

/// The class names of a named dataset, in label order (CIFAR-100's fine
/// classes); `None` for a name not in [`DATASETS`].
pub fn class_names(name: &str) -> Option<Vec<String>> {
    let owned = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
    match name {
        "digits" | "mnist" => Some(numbered_classes(10)),
        "fashion-mnist" => Some(owned(&FASHION_MNIST)),
        "kmnist" => Some(owned(&KMNIST)),
        "cifar10" => Some(owned(&CIFAR10_CLASSES)),
        "cifar100" => Some(owned(&CIFAR100_FINE_CLASSES)),
        _ => None,
    }
}

/// Where named datasets are read from: `$XENT_DATA` if set and not empty,
/// else `xent` in the platform cache directory (`$XDG_CACHE_HOME` or
/// `~/.cache` on Linux, `~/Library/Caches` on macOS, `%LOCALAPPDATA%` on
/// Windows; `.cache` in the working directory when none is known).
pub fn data_dir() -> PathBuf {
    data_dir_with(|key| env::var_os(key))
}

/// [`data_dir`] with the environment read through `env_var`.
fn data_dir_with(env_var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let var = |key: &str| env_var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("XENT_DATA") {
        return dir;
    }

    // The XDG base-directory rules ignore a relative XDG_CACHE_HOME.
    let home = var("HOME").or_else(|| var("USERPROFILE"));
    let cache = if cfg!(windows) {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        home.map(|h| h.join("Library").join("Caches"))
    } else {
        var("XDG_CACHE_HOME").filter(|p| p.is_absolute()).or_else(|| home.map(|h| h.join(".cache")))
    };
    cache.unwrap_or_else(|| PathBuf::from(".cache")).join("xent")
}

/// Loads a dataset by name from [`data_dir`], or from a path, with the
/// default [`LoadOptions`].
///
/// `digits` is embedded and needs no files. `mnist`, `fashion-mnist`,
/// `kmnist`, `cifar10` and `cifar100` are read from `<data dir>/<name>/`.
/// Anything else is taken as a path: a `.csv` (or `.csv.gz`) file is read
/// by [`read_csv_split`](super::read_csv_split); a folder holding CIFAR
/// `.bin` files (itself or in its standard sub-folder) as CIFAR-10 or
/// CIFAR-100; an image folder (class sub-folders of PNG or JPEG files, see
/// [`read_image_folder`](super::read_image_folder)); any other folder as the
/// four [`IDX_FILES`](super::IDX_FILES), with classes `"0"`..`"9"`. Write
/// `./mnist` for a folder that shares a dataset's name.
///
/// # Errors
///
/// [`Error::UnknownDataset`] for a name that is neither known nor a path,
/// [`Error::DatasetMissing`] when files are absent, and the reading errors
/// of the formats.
pub fn load(name_or_path: &str) -> Result<Split> {
    load_from(name_or_path, &data_dir())
}

/// [`load`] with an explicit data directory in place of [`data_dir`].
///
/// # Errors
///
/// As [`load`].
pub fn load_from(name_or_path: &str, data_dir: &Path) -> Result<Split> {
    load_from_with(name_or_path, data_dir, &LoadOptions::default()).map(|(split, _)| split)
}

/// [`load`] with import options (CIFAR-100's labels, a held-out fraction and
/// its seed, an image folder's channels, size and bad-file policy),
/// returning what the import did as well. Each reader uses the options that
/// apply to it.
///
/// # Errors
///
/// As [`load`].
pub fn load_with(name_or_path: &str, options: &LoadOptions) -> Result<(Split, ImportReport)> {
    load_from_with(name_or_path, &data_dir(), options)
}

/// [`load_with`] with an explicit data directory in place of [`data_dir`].
///
/// # Errors
///
/// As [`load`].
pub fn load_from_with(
    name_or_path: &str,
    data_dir: &Path,
    options: &LoadOptions,
) -> Result<(Split, ImportReport)> {
    coarse_only_for_cifar100(name_or_path, options)?;

    // Image folders are the one format with import options of their own;
    // CSV files are the other format a held-out fraction applies to.
    let path = Path::new(name_or_path);
    if reads_as_image_folder(name_or_path) {
        return read_image_folder(path, options);
    }
    only_for_folders(name_or_path, options)?;
    if is_csv_path(name_or_path) {
        return read_csv_split_with(path, options);
    }

    // Every other format has its own test split, so a held-out fraction
    // would be recorded in the run and change nothing. It is refused once
    // the files are found, so missing files are reported first.
    let split = read_split(name_or_path, data_dir, options)?;
    if options.val_fraction.is_some() {
        return Err(Error::arg(format!(
            "--val-fraction holds out part of a dataset that has no test split (an image folder \
             without test/ or val/, or a .csv file), and {name_or_path} has its own test split"
        )));
    }
    Ok((split, ImportReport::default()))
}

/// Reads a dataset that is neither an image folder nor a CSV file: by name
/// the embedded digits, CIFAR, then the IDX datasets; by path a CIFAR or
/// an IDX folder. A missing folder that is clearly meant as a path is
/// reported as missing IDX files; a bare word is an unknown name.
fn read_split(name_or_path: &str, data_dir: &Path, options: &LoadOptions) -> Result<Split> {
    if name_or_path == "digits" {
        return digits_split();
    }
    if let Some(kind) = CifarKind::from_name(name_or_path) {
        let dir = data_dir.join(name_or_path);
        return read_cifar_split(&dir, name_or_path, kind, options.labels);
    }
    if let Some(classes) = class_names(name_or_path) {
        return read_idx_split(&data_dir.join(name_or_path), name_or_path, &classes);
    }

    let path = Path::new(name_or_path);
    if let Some(kind) = detect_cifar(path) {
        return read_cifar_split(path, name_or_path, kind, options.labels);
    }
    let looks_like_path = name_or_path.contains(['/', '\\']) || name_or_path.starts_with('.');
    if looks_like_path && !path.exists() {
        return Err(Error::invalid(path, "no such file or folder"));
    }
    if path.is_file() {
        return Err(Error::invalid(
            path,
            "not a dataset: --dataset takes a folder or a .csv file (see \"Data\" in the README)",
        ));
    }
    if path.is_dir() || looks_like_path {
        return read_idx_split(path, name_or_path, &numbered_classes(10));
    }
    Err(Error::UnknownDataset { name: name_or_path.into(), known: DATASETS.join(", ") })
}

/// Whether [`load`] reads `name_or_path` as an image folder: not a dataset
/// name, a `.csv` path or a folder of CIFAR `.bin` files, and
/// [`is_image_folder`](super::is_image_folder).
pub fn reads_as_image_folder(name_or_path: &str) -> bool {
    let path = Path::new(name_or_path);
    !DATASETS.contains(&name_or_path)
        && !is_csv_path(name_or_path)
        && detect_cifar(path).is_none()
        && is_image_folder(path)
}

/// The test split of a dataset, as [`load_with`] reads it, with what the
/// import did. An image folder without a held-out fraction is read from its
/// `test/` (or `val/`) folder alone (see
/// [`read_test_folder`](super::read_test_folder)), so it needs no `train/`
/// and its classes are its test classes; every other dataset is read whole.
///
/// # Errors
///
/// As [`load_with`].
pub fn load_test_with(
    name_or_path: &str,
    options: &LoadOptions,
) -> Result<(Dataset, ImportReport)> {
    // Model files written before a held-out fraction was refused for a
    // dataset with a test split may record one; training ignored it then.
    let path = Path::new(name_or_path);
    let mut options = options.clone();
    if reads_as_image_folder(name_or_path) {
        if options.val_fraction.is_some() && !has_test_folder(path) {
            return load_with(name_or_path, &options).map(|(split, report)| (split.test, report));
        }
        options.val_fraction = None;
        return read_test_folder(path, &options);
    }
    if !is_csv_path(name_or_path) {
        options.val_fraction = None;
    }
    load_with(name_or_path, &options).map(|(split, report)| (split.test, report))
}

/// Refuses the options only image folders use instead of ignoring them: a
/// `--size` that silently did nothing would train on other images than asked.
pub(crate) fn only_for_folders(name: &str, options: &LoadOptions) -> Result<()> {
    let given: Vec<&str> = [
        (options.channels.is_some(), "--channels"),
        (options.size.is_some(), "--size"),
        (options.skip_bad, "--skip-bad"),
    ]
    .into_iter()
    .filter_map(|(set, flag)| set.then_some(flag))
    .collect();
    if given.is_empty() {
        return Ok(());
    }
    Err(Error::arg(format!(
        "{} applies to image folders only, and {name} is not one (PNG or JPEG files in one \
         sub-folder per class)",
        given.join(" and ")
    )))
}

/// Refuses CIFAR-100's coarse labels for any other dataset, which has one
/// set of labels: a run would record an option that changed nothing.
fn coarse_only_for_cifar100(name: &str, options: &LoadOptions) -> Result<()> {
    if options.labels == LabelKind::Fine {
        return Ok(());
    }
    let kind = match DATASETS.contains(&name) {
        true => CifarKind::from_name(name),
        false => detect_cifar(Path::new(name)),
    };
    if kind == Some(CifarKind::Cifar100) {
        return Ok(());
    }
    Err(Error::arg(format!(
        "--labels coarse applies to CIFAR-100 only (its 20 superclasses), and {name} is not \
         CIFAR-100"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_in_label_order() {
        assert_eq!(class_names("mnist").expect("known")[3], "3");
        assert_eq!(class_names("fashion-mnist").expect("known")[9], "Ankle boot");
        assert_eq!(class_names("kmnist").expect("known")[3], "tsu");
        assert!(class_names("cifar7").is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn data_dir_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| OsString::from(v))
        };
        let dir = |pairs| data_dir_with(env(pairs));
        assert_eq!(dir(&[("XENT_DATA", "/d"), ("HOME", "/h")]), PathBuf::from("/d"));
        assert_eq!(dir(&[("XENT_DATA", ""), ("HOME", "/h")]), PathBuf::from("/h/.cache/xent"));
        assert_eq!(dir(&[("XDG_CACHE_HOME", "/c"), ("HOME", "/h")]), PathBuf::from("/c/xent"));
        assert_eq!(
            dir(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")]),
            PathBuf::from("/h/.cache/xent")
        );
        assert_eq!(dir(&[]), PathBuf::from(".cache/xent"));
    }

    #[test]
    fn unknown_name_lists_known_names() {
        let err = load_from("mnits", Path::new("/nonexistent")).unwrap_err();
        let known = "digits, mnist, fashion-mnist, kmnist, cifar10, cifar100";
        assert!(err.to_string().contains(known), "{err}");
        assert!(err.hint().is_some());
    }
}
