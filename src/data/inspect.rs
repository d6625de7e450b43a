//! An audit of a dataset without training: classes and counts per split,
//! image sizes and pixel layouts, skipped and bad files, the training
//! split's per-channel mean and standard deviation, and identical images
//! within and across splits (test leakage).
//!
//! Image folders are audited file by file and never fail on what loading
//! would refuse (mixed sizes, bad files, an extra test class): those become
//! warnings. Other datasets are loaded and audited in memory; a pixel CSV
//! file without a test split is audited whole, with a warning.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::csv::{is_csv_path, read_csv_labelled, split_csv};
use super::folder::{
    check_options, common_channels, decode, headers, probe_files, relative, scan, target_name,
    ClassDir, Layout, Probe, Target,
};
use super::named::only_for_folders;
use super::{detect_cifar, is_image_folder, load_with, Dataset, ImportReport, LoadOptions};
use super::{Split, DATASETS};
use crate::{Error, Result};

/// A file, and why it was passed over or what is wrong with it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileNote {
    /// The file, relative to the dataset folder.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// The images of one class in one split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassCount {
    /// Class name.
    pub class: String,
    /// Readable images.
    pub images: usize,
}

/// One split and its images per class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitSummary {
    /// `train`, `test`, `val`, or `all` for a folder without splits.
    pub name: String,
    /// Readable images.
    pub images: usize,
    /// Images per class, in class order (a test class the training split
    /// lacks comes last).
    pub classes: Vec<ClassCount>,
}

/// How many images have one size.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SizeCount {
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Images of this size.
    pub images: usize,
}

/// A test image identical to a training image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Leak {
    /// The test image.
    pub test: String,
    /// The first training image with the same content.
    pub train: String,
}

/// What `xent data inspect` reports.
///
/// Paths are relative to the dataset folder; images of datasets read from
/// other formats are named `train #i`, `test #i` (`all #i` for a CSV file
/// without a test split; 0-based).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inspection {
    /// The name or path given.
    pub dataset: String,
    /// `image folder`, `IDX`, `CIFAR binary`, `pixel CSV` or `embedded`.
    pub format: String,
    /// The class map: label `k` is `classes[k]`.
    pub classes: Vec<String>,
    /// Each split with its images per class.
    pub splits: Vec<SplitSummary>,
    /// Image sizes found, the most common first.
    pub sizes: Vec<SizeCount>,
    /// Pixel layouts found (`RGB`, `grey`, `RGBA`, `palette`, ...) and how
    /// many images have each.
    pub modes: BTreeMap<String, usize>,
    /// Channels the images are (or would be) converted to.
    pub channels: usize,
    /// Conversions loading applies (`RGBA -> RGB`), with counts.
    pub conversions: BTreeMap<String, usize>,
    /// The pixel value of full intensity.
    pub max_value: u8,
    /// Per-channel mean of the first split's pixels on the `[0, 1]` scale:
    /// the mean to normalise with.
    pub mean: Vec<f64>,
    /// Per-channel population standard deviation, same scale (0 for a
    /// constant channel).
    pub std: Vec<f64>,
    /// Entries passed over, with why.
    pub skipped: Vec<FileNote>,
    /// Files that cannot be decoded, with why.
    pub bad: Vec<FileNote>,
    /// Test images with the same content as a training image (files:
    /// byte for byte; other formats: pixel for pixel).
    pub leaks: Vec<Leak>,
    /// Per split: images identical to an earlier image of the same split.
    pub duplicates: BTreeMap<String, usize>,
    /// Findings that would stop or weaken training.
    pub warnings: Vec<String>,
}

/// Audits a dataset by name or path: an image folder file by file, any
/// other dataset after loading it with `options`.
///
/// # Errors
///
/// As [`load_with`](super::load_with) for datasets that are not image
/// folders; as [`inspect_folder`] for image folders.
pub fn inspect(name_or_path: &str, options: &LoadOptions) -> Result<Inspection> {
    let path = Path::new(name_or_path);
    let named = DATASETS.contains(&name_or_path);
    if !named && is_image_folder(path) {
        return inspect_folder(path, options);
    }
    if !named && is_csv_path(name_or_path) {
        return inspect_csv(path, options);
    }
    let (split, report) = load_with(name_or_path, options)?;
    let format = match name_or_path {
        "digits" => "embedded",
        "cifar10" | "cifar100" => "CIFAR binary",
        _ if detect_cifar(path).is_some() => "CIFAR binary",
        _ => "IDX",
    };
    Ok(inspect_split(name_or_path, format, &split, &report))
}

/// Audits a pixel CSV file: its split as training would make it, or, when
/// it has no test split, all its rows with a warning (as a folder without
/// `test/`), since that is for training to refuse, not for an audit.
fn inspect_csv(path: &Path, options: &LoadOptions) -> Result<Inspection> {
    // The folder options were refused by load_with for a CSV file; so here.
    only_for_folders(&path.display().to_string(), options)?;
    let (all, warnings) = read_csv_labelled(path)?;
    let name = path.display().to_string();
    let report = ImportReport { warnings, ..ImportReport::default() };
    match split_csv(path, all.clone(), options) {
        Ok(split) => Ok(inspect_split(&name, CSV_FORMAT, &split, &report)),
        Err(Error::NoTestSplit { expected, .. }) => {
            let mut inspection = inspect_parts(&name, CSV_FORMAT, &[("all", &all)], &report);
            inspection.warnings.push(format!(
                "no test split: training needs --val-fraction F to hold out a fraction of each \
                 class, or {expected}"
            ));
            Ok(inspection)
        }
        Err(err) => Err(err),
    }
}

/// The format name of pixel CSV files in an [`Inspection`].
const CSV_FORMAT: &str = "pixel CSV";

/// Audits a dataset already in memory, with the report of its import.
pub fn inspect_split(name: &str, format: &str, split: &Split, report: &ImportReport) -> Inspection {
    inspect_parts(name, format, &[("train", &split.train), ("test", &split.test)], report)
}

/// Audits the named parts of a dataset: the first is the training split
/// (its pixels give the statistics), the second, if any, the test split.
fn inspect_parts(
    name: &str,
    format: &str,
    parts: &[(&str, &Dataset)],
    report: &ImportReport,
) -> Inspection {
    let train = parts[0].1;
    let [c, h, w] = train.sample_shape();
    let images = parts.iter().map(|(_, ds)| ds.len()).sum();
    let hists = histograms(train);
    let (mean, std) = moments(&hists, train.max_value());

    // Identical images by a hash of their pixels.
    let hashes: Vec<Vec<[u8; 32]>> = parts
        .iter()
        .map(|(_, ds)| {
            (0..ds.len()).into_par_iter().map(|i| Sha256::digest(ds.image(i)).into()).collect()
        })
        .collect();
    let train_name = |i: usize| format!("{} #{i}", parts[0].0);
    let test_name = |i: usize| format!("{} #{i}", parts.get(1).map_or("test", |p| p.0));
    let hashed: Vec<(&str, Vec<Option<&[u8; 32]>>)> =
        parts.iter().zip(&hashes).map(|((name, _), hashes)| (*name, optional(hashes))).collect();
    let (leaks, duplicates) = duplicates(&hashed, &[&train_name, &test_name]);

    let note = |(path, reason): &(std::path::PathBuf, String)| FileNote {
        path: path.display().to_string(),
        reason: reason.clone(),
    };
    Inspection {
        dataset: name.into(),
        format: format.into(),
        classes: train.classes().to_vec(),
        splits: parts.iter().map(|(name, ds)| summary(name, ds)).collect(),
        sizes: vec![SizeCount { height: h, width: w, images }],
        modes: BTreeMap::from([(mode_name(c), images)]),
        channels: c,
        conversions: report.conversions.clone(),
        max_value: train.max_value(),
        mean,
        std,
        skipped: report.skipped.iter().map(note).collect(),
        bad: report.bad.iter().map(note).collect(),
        leaks,
        duplicates,
        warnings: report.warnings.clone(),
    }
}

/// Every hash of `hashes`, as readable.
fn optional(hashes: &[[u8; 32]]) -> Vec<Option<&[u8; 32]>> {
    hashes.iter().map(Some).collect()
}

/// The name of a layout of `c` channels.
fn mode_name(c: usize) -> String {
    if c == 1 || c == 3 {
        target_name(c).into()
    } else {
        format!("{c} channels")
    }
}

/// A split's images per class.
fn summary(name: &str, ds: &Dataset) -> SplitSummary {
    let classes = ds
        .classes()
        .iter()
        .zip(ds.class_counts())
        .map(|(class, images)| ClassCount { class: class.clone(), images })
        .collect();
    SplitSummary { name: name.into(), images: ds.len(), classes }
}

/// Per-channel histograms of the `u8` values of `ds`.
fn histograms(ds: &Dataset) -> Vec<[u64; 256]> {
    let [c, h, w] = ds.sample_shape();
    let mut hists = vec![[0u64; 256]; c];
    for image in ds.images().chunks_exact(c * h * w) {
        add_planes(&mut hists, image);
    }
    hists
}

/// Adds the planes of one image `[c, h, w]` to per-channel histograms.
fn add_planes(hists: &mut [[u64; 256]], image: &[u8]) {
    let plane = image.len() / hists.len();
    for (hist, pixels) in hists.iter_mut().zip(image.chunks_exact(plane)) {
        for &v in pixels {
            hist[v as usize] += 1;
        }
    }
}

/// Mean and population standard deviation of each channel's values scaled
/// by `1 / max_value`, from exact histograms (as `Normalize::measure`, but a
/// constant channel keeps std 0).
fn moments(hists: &[[u64; 256]], max_value: u8) -> (Vec<f64>, Vec<f64>) {
    let scale = 1.0 / f64::from(max_value.max(1));
    let (mut means, mut stds) = (Vec::new(), Vec::new());
    for hist in hists {
        let n = hist.iter().sum::<u64>() as f64;
        let scaled = || hist.iter().enumerate().map(|(v, &k)| (v as f64 * scale, k as f64));
        let mean = if n > 0.0 { scaled().map(|(s, k)| k * s).sum::<f64>() / n } else { 0.0 };
        let var = if n > 0.0 {
            scaled().map(|(s, k)| k * (s - mean).powi(2)).sum::<f64>() / n
        } else {
            0.0
        };
        means.push(mean);
        stds.push(var.sqrt());
    }
    (means, stds)
}

/// Test images identical to a training image, and per split the images
/// identical to an earlier one of the same split. `splits` holds each
/// split's name and content hashes (`None`: unreadable); the first split is
/// the training split, the second (if any) the test split.
fn duplicates(
    splits: &[(&str, Vec<Option<&[u8; 32]>>)],
    names: &[&dyn Fn(usize) -> String],
) -> (Vec<Leak>, BTreeMap<String, usize>) {
    let mut first_in: Vec<HashMap<&[u8; 32], usize>> = Vec::new();
    let mut within = BTreeMap::new();
    for (name, hashes) in splits {
        let mut first = HashMap::new();
        let mut repeats = 0;
        for (i, hash) in hashes.iter().enumerate() {
            let Some(hash) = hash else { continue };
            if first.contains_key(hash) {
                repeats += 1;
            } else {
                first.insert(*hash, i);
            }
        }
        within.insert(name.to_string(), repeats);
        first_in.push(first);
    }

    // Leaks: each test image whose content is also in the training split.
    let mut leaks = Vec::new();
    if let (Some(train), Some((_, test))) = (first_in.first(), splits.get(1)) {
        for (i, hash) in test.iter().enumerate() {
            if let Some(&j) = hash.and_then(|hash| train.get(hash)) {
                leaks.push(Leak { test: names[1](i), train: names[0](j) });
            }
        }
    }
    (leaks, within)
}

/// One file of an image folder: its split, class and path.
struct Entry<'a> {
    split: usize,
    class: &'a str,
    path: &'a Path,
}

/// Per-thread state of the decoding pass.
struct Tally {
    hists: Vec<[u64; 256]>,
    failed: Vec<(usize, String)>,
    scratch: Vec<u8>,
    planes: Vec<u8>,
}

impl Tally {
    fn new(c: usize) -> Tally {
        Tally {
            hists: vec![[0; 256]; c],
            failed: Vec::new(),
            scratch: Vec::new(),
            planes: Vec::new(),
        }
    }

    fn merge(mut self, other: Tally) -> Tally {
        for (a, b) in self.hists.iter_mut().zip(&other.hists) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.failed.extend(other.failed);
        self
    }
}

/// Audits an image folder file by file: every file is read, hashed and
/// decoded (so cut-short files are found), the images of the first split
/// also feed the pixel statistics. Images are converted to
/// `options.channels` (default: as loading would) and measured at their own
/// size, or at `options.size` when given. What loading would refuse is
/// reported as a warning.
///
/// # Errors
///
/// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an option
/// out of range; [`Error::InvalidData`](crate::Error::InvalidData) when the
/// folder holds no class folders with images; [`Error::Io`](crate::Error::Io)
/// when a folder cannot be listed.
pub fn inspect_folder(root: &Path, options: &LoadOptions) -> Result<Inspection> {
    check_options(options)?;
    let layout = scan(root)?;
    let mut splits: Vec<(String, &[ClassDir])> =
        vec![(layout.train_dir.clone().unwrap_or_else(|| "all".into()), &layout.train)];
    if let Some((name, classes)) = &layout.test {
        splits.push((name.clone(), classes));
    }
    let entries: Vec<Entry> = splits
        .iter()
        .enumerate()
        .flat_map(|(split, (_, classes))| {
            classes.iter().flat_map(move |class| {
                class.files.iter().map(move |path| Entry { split, class: &class.name, path })
            })
        })
        .collect();
    let split_names: Vec<String> = splits.iter().map(|(name, _)| name.clone()).collect();

    // Pass 1: header and content hash of every file.
    let paths: Vec<&Path> = entries.iter().map(|e| e.path).collect();
    let mut probes = probe_files(&paths, true);
    let c = options.channels.unwrap_or_else(|| common_channels(headers(&probes)));

    // Pass 2: decode everything; the first split's pixels feed the histograms.
    let tally = entries
        .par_iter()
        .zip(probes.par_iter_mut())
        .enumerate()
        .fold(
            || Tally::new(c),
            |mut t, (i, (entry, probe))| {
                let Ok(header) = probe.header else { return t };
                let (h, w) = options.size.unwrap_or((header.h, header.w));
                t.planes.resize(c * h * w, 0);
                let target = Target { c, h, w };
                let decoded = probe
                    .take_bytes(entry.path)
                    .and_then(|bytes| decode(&bytes, target, &mut t.scratch, &mut t.planes));
                match decoded {
                    Err(why) => t.failed.push((i, why)),
                    Ok(()) if entry.split == 0 => add_planes(&mut t.hists, &t.planes),
                    Ok(()) => {}
                }
                t
            },
        )
        .reduce(|| Tally::new(c), Tally::merge);

    let report = FolderFindings { root, layout: &layout, entries: &entries, probes: &probes, c };
    Ok(report.inspection(split_names, tally, options))
}

/// Everything the two passes over an image folder found, to be summarised.
struct FolderFindings<'a> {
    root: &'a Path,
    layout: &'a Layout,
    entries: &'a [Entry<'a>],
    probes: &'a [Probe],
    c: usize,
}

impl FolderFindings<'_> {
    fn inspection(
        &self,
        split_names: Vec<String>,
        tally: Tally,
        options: &LoadOptions,
    ) -> Inspection {
        // Bad files: unreadable headers, then failed decodes, in file order.
        let mut bad: Vec<(usize, String)> = self
            .probes
            .iter()
            .enumerate()
            .filter_map(|(i, probe)| probe.header.as_ref().err().map(|why| (i, why.clone())))
            .chain(tally.failed)
            .collect();
        bad.sort();
        let mut good = vec![true; self.entries.len()];
        for (i, _) in &bad {
            good[*i] = false;
        }

        let (sizes, modes, conversions) = self.layouts(&good);
        let (leaks, duplicates) = self.duplicates(&split_names, &good);
        let splits = self.summaries(&split_names, &good);
        let warnings = self.warnings(&split_names, &splits, &sizes, bad.len(), options);
        let (mean, std) = moments(&tally.hists, 255);
        let note = |(path, reason): &(std::path::PathBuf, String)| FileNote {
            path: relative(self.root, path),
            reason: reason.clone(),
        };
        Inspection {
            dataset: self.root.display().to_string(),
            format: "image folder".into(),
            classes: self.layout.train.iter().map(|c| c.name.clone()).collect(),
            splits,
            sizes,
            modes,
            channels: self.c,
            conversions,
            max_value: 255,
            mean,
            std,
            skipped: self.layout.skipped.iter().map(note).collect(),
            bad: bad
                .into_iter()
                .map(|(i, reason)| FileNote { path: self.path(i), reason })
                .collect(),
            leaks,
            duplicates,
            warnings,
        }
    }

    /// File `i` relative to the folder.
    fn path(&self, i: usize) -> String {
        relative(self.root, self.entries[i].path)
    }

    /// Sizes (most common first), pixel layouts and the conversions loading
    /// would apply, over the good images.
    fn layouts(
        &self,
        good: &[bool],
    ) -> (Vec<SizeCount>, BTreeMap<String, usize>, BTreeMap<String, usize>) {
        let mut by_size: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        let mut modes = BTreeMap::new();
        let mut conversions = BTreeMap::new();
        let plain = target_name(self.c);
        let headers = self
            .probes
            .iter()
            .zip(good)
            .filter(|(_, &g)| g)
            .filter_map(|(p, _)| p.header.as_ref().ok());
        for header in headers {
            *by_size.entry((header.h, header.w)).or_insert(0) += 1;
            *modes.entry(header.mode.name().to_string()).or_insert(0) += 1;
            if header.mode.name() != plain {
                *conversions.entry(format!("{} -> {plain}", header.mode.name())).or_insert(0) += 1;
            }
        }
        let mut sizes: Vec<SizeCount> = by_size
            .into_iter()
            .map(|((height, width), images)| SizeCount { height, width, images })
            .collect();
        sizes.sort_by_key(|s| std::cmp::Reverse(s.images));
        (sizes, modes, conversions)
    }

    /// Leaks and repeats among the good files, by content hash.
    fn duplicates(
        &self,
        split_names: &[String],
        good: &[bool],
    ) -> (Vec<Leak>, BTreeMap<String, usize>) {
        let indices: Vec<Vec<usize>> = (0..split_names.len())
            .map(|s| (0..self.entries.len()).filter(|&i| self.entries[i].split == s).collect())
            .collect();
        let hashes: Vec<(&str, Vec<Option<&[u8; 32]>>)> = split_names
            .iter()
            .zip(&indices)
            .map(|(name, ix)| {
                let hash = |&i: &usize| self.probes[i].hash.as_ref().filter(|_| good[i]);
                (name.as_str(), ix.iter().map(hash).collect())
            })
            .collect();
        let train_name = |i: usize| self.path(indices[0][i]);
        let test_name = |i: usize| self.path(indices[1][i]);
        duplicates(&hashes, &[&train_name, &test_name])
    }

    /// Readable images per class of each split, classes in folder order.
    fn summaries(&self, split_names: &[String], good: &[bool]) -> Vec<SplitSummary> {
        let mut splits: Vec<SplitSummary> = split_names
            .iter()
            .map(|name| SplitSummary { name: name.clone(), images: 0, classes: Vec::new() })
            .collect();
        for (entry, _) in self.entries.iter().zip(good).filter(|(_, &g)| g) {
            let split = &mut splits[entry.split];
            split.images += 1;
            match split.classes.last_mut() {
                Some(last) if last.class == entry.class => last.images += 1,
                _ => split.classes.push(ClassCount { class: entry.class.into(), images: 1 }),
            }
        }
        splits
    }

    /// What would stop or weaken training on this folder.
    fn warnings(
        &self,
        split_names: &[String],
        splits: &[SplitSummary],
        sizes: &[SizeCount],
        bad: usize,
        options: &LoadOptions,
    ) -> Vec<String> {
        let mut warnings = self.layout.warnings.clone();
        let classes: Vec<&str> = self.layout.train.iter().map(|c| c.name.as_str()).collect();
        match splits.get(1) {
            None if options.val_fraction.is_none() => warnings.push(
                "no test/ or val/ folder: training needs --val-fraction F to hold out a fraction \
                 of each class"
                    .into(),
            ),
            None => {}
            Some(test) => {
                let dir = &split_names[1];
                for class in test.classes.iter().filter(|c| !classes.contains(&c.class.as_str())) {
                    warnings.push(format!(
                        "{dir}/{}: class not in the training split; training stops on it",
                        class.class
                    ));
                }
                for class in classes.iter().filter(|&&c| !test.classes.iter().any(|t| t.class == c))
                {
                    warnings.push(format!("class {class} has no test images"));
                }
            }
        }
        if sizes.len() > 1 && options.size.is_none() {
            warnings.push(format!(
                "images differ in size ({} sizes); training needs --size HxW",
                sizes.len()
            ));
        }
        if bad > 0 && !options.skip_bad {
            warnings.push(format!(
                "{bad} file(s) cannot be decoded; training stops on them unless --skip-bad"
            ));
        }
        warnings
    }
}
