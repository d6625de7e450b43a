//! Image folders: one sub-folder per class holding PNG or JPEG files, split
//! into `train/` and `test/` (or `val/`), or one folder split by a held-out
//! fraction. Every image is decoded once, in parallel, into `u8` planes
//! `[c, h, w]` with `max_value` 255.
//!
//! Classes are the training split's sub-folder names sorted bytewise, and
//! samples come class by class, files sorted by name. Hidden and foreign
//! entries (`.DS_Store`, `__MACOSX/`, `Thumbs.db`, non-images) are skipped
//! and reported, never read as classes or images.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegDecoder;
use image::codecs::png::PngDecoder;
use image::imageops::FilterType;
use image::{ColorType, DynamicImage, ImageDecoder};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Dataset, ImportReport, LoadOptions, Split, IDX_FILES};
use crate::rng::Rng;
use crate::{Error, Result};

/// The filter that resizes images to [`LoadOptions::size`]: bilinear (a
/// triangle filter), the one `xent predict` uses, so training and prediction
/// see the same pixels.
pub const RESIZE_FILTER: FilterType = FilterType::Triangle;

/// The random stream purposes `HOLDOUT_STREAM + label` choose each class's
/// held-out images ("hold" in ASCII, in the upper half).
const HOLDOUT_STREAM: u64 = 0x686f_6c64 << 32;

/// Extensions of the files read as images, lowercase.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Extensions of images in formats xent does not read, lowercase.
const OTHER_IMAGE_EXTENSIONS: [&str; 9] =
    ["gif", "bmp", "webp", "tif", "tiff", "heic", "heif", "avif", "ppm"];

/// Bad files named in an error; the rest are counted.
const BAD_SHOWN: usize = 10;

/// Example files named per image size in an error.
const SIZE_EXAMPLES: usize = 3;

/// The files of one class folder, in name order (sub-folders where their names sort).
#[derive(Clone, Debug)]
pub(crate) struct ClassDir {
    /// The folder's name, which is the class name.
    pub name: String,
    /// Its PNG and JPEG files, sub-folders included.
    pub files: Vec<PathBuf>,
}

/// What a walk over an image folder found.
#[derive(Clone, Debug, Default)]
pub(crate) struct Layout {
    /// The training split's folder name (`train`), or `None` when the class
    /// folders sit at the top level.
    pub train_dir: Option<String>,
    /// The training classes, sorted by name, none empty.
    pub train: Vec<ClassDir>,
    /// The test split's folder name (`test` or `val`) and its classes.
    pub test: Option<(String, Vec<ClassDir>)>,
    /// Entries passed over, with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Class folders without images and similar findings.
    pub warnings: Vec<String>,
}

/// Pixel layout of an image file, before conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Mode {
    Grey,
    GreyAlpha,
    Rgb,
    Rgba,
    Palette,
    Grey16,
    GreyAlpha16,
    Rgb16,
    Rgba16,
}

impl Mode {
    /// The name shown in reports, e.g. `RGBA` or `grey 16-bit`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Grey => "grey",
            Mode::GreyAlpha => "grey+alpha",
            Mode::Rgb => "RGB",
            Mode::Rgba => "RGBA",
            Mode::Palette => "palette",
            Mode::Grey16 => "grey 16-bit",
            Mode::GreyAlpha16 => "grey+alpha 16-bit",
            Mode::Rgb16 => "RGB 16-bit",
            Mode::Rgba16 => "RGBA 16-bit",
        }
    }

    /// Colour channels, alpha not counted: 1 or 3.
    pub fn channels(self) -> usize {
        match self {
            Mode::Grey | Mode::GreyAlpha | Mode::Grey16 | Mode::GreyAlpha16 => 1,
            _ => 3,
        }
    }
}

/// The name of the plain 8-bit mode with `channels` channels.
pub(crate) fn target_name(channels: usize) -> &'static str {
    if channels == 1 {
        Mode::Grey.name()
    } else {
        Mode::Rgb.name()
    }
}

/// Size and pixel layout of an image file, read from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// Height in pixels.
    pub h: usize,
    /// Width in pixels.
    pub w: usize,
    /// Pixel layout.
    pub mode: Mode,
}

/// Whether `dir` is to be read as an image folder: it has a visible
/// sub-folder (a split or a class) and no IDX files. A folder without
/// sub-folders is left to the IDX reader, whose error lists the files it
/// expects.
pub fn is_image_folder(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    let mut has_sub_folder = false;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if IDX_FILES.iter().any(|idx| name.starts_with(idx)) {
            return false;
        }
        has_sub_folder |= foreign(&name).is_none() && entry.path().is_dir();
    }
    has_sub_folder
}

/// Why an entry named `name` is not part of any dataset, if it is not:
/// hidden files and folders, and the metadata that archivers and file
/// managers leave behind.
fn foreign(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if name.starts_with('.') {
        Some("hidden")
    } else if lower == "__macosx" {
        Some("macOS archive metadata")
    } else if lower == "thumbs.db" || lower == "desktop.ini" {
        Some("Windows folder metadata")
    } else if lower == "__pycache__" {
        Some("Python cache")
    } else {
        None
    }
}

/// Whether `path` has a PNG or JPEG extension.
fn is_image_name(path: &Path) -> bool {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    ext.is_some_and(|ext| IMAGE_EXTENSIONS.contains(&ext.as_str()))
}

/// Why a file in a class folder is not read as an image, if it is not.
fn not_an_image(path: &Path) -> Option<String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(why) = foreign(&name) {
        return Some(format!("{why} file"));
    }
    if is_image_name(path) {
        return None;
    }
    match path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()) {
        Some(ext) if OTHER_IMAGE_EXTENSIONS.contains(&ext.as_str()) => {
            Some(format!(".{ext} images are not read; convert them to PNG or JPEG"))
        }
        Some(ext) => Some(format!("not an image (.{ext})")),
        None => Some("not an image (no extension)".into()),
    }
}

/// A folder's entries sorted by name: `(name, path, is_dir)`. Symbolic
/// links are followed; other entries need no `stat`, which matters for
/// folders of many small files.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let read = fs::read_dir(dir).map_err(|e| Error::io("reading folder", dir, e))?;
    let mut found = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| Error::io("reading folder", dir, e))?;
        let path = entry.path();
        let is_dir = match entry.file_type() {
            Ok(kind) if !kind.is_symlink() => kind.is_dir(),
            _ => path.is_dir(),
        };
        found.push((entry.file_name().to_string_lossy().into_owned(), path, is_dir));
    }
    // Siblings share their parent, so raw bytes order them by name.
    found.sort_by(|a, b| a.1.as_os_str().cmp(b.1.as_os_str()));
    Ok(found)
}

/// The image files under `dir` in name order, a sub-folder's files where
/// the sub-folder's name sorts; everything else goes to `skipped`. Linked
/// folders are not entered, so a link cycle cannot make the walk endless.
fn class_files(dir: &Path, skipped: &mut Vec<(PathBuf, String)>) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for (name, path, is_dir) in entries(dir)? {
        if is_dir {
            let linked = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
            if let Some(why) = foreign(&name) {
                skipped.push((path, format!("{why} folder")));
            } else if linked {
                skipped.push((path, "link to a folder, not followed".into()));
            } else {
                files.extend(class_files(&path, skipped)?);
            }
        } else if let Some(why) = not_an_image(&path) {
            skipped.push((path, why));
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

/// The class folders of `dir` (a split folder, or the top level), with
/// loose files and foreign folders skipped; classes without images are
/// left out with a warning.
fn class_dirs(dir: &Path, label: &str, layout: &mut Layout) -> Result<Vec<ClassDir>> {
    let mut classes = Vec::new();
    for (name, path, is_dir) in entries(dir)? {
        if let Some(why) = foreign(&name) {
            let kind = if is_dir { "folder" } else { "file" };
            layout.skipped.push((path, format!("{why} {kind}")));
        } else if !is_dir {
            layout.skipped.push((path, format!("loose file in {label}, not in a class folder")));
        } else {
            let files = class_files(&path, &mut layout.skipped)?;
            if files.is_empty() {
                let shown = path.display();
                layout.warnings.push(format!("{shown}: no PNG or JPEG files, not used as a class"));
            } else {
                classes.push(ClassDir { name, files });
            }
        }
    }
    classes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(classes)
}

/// Walks an image folder: its splits, class folders and files. Split
/// folders are recognised whatever their case (`Train/`, `TEST/`).
///
/// # Errors
///
/// [`Error::Io`] when a folder cannot be listed, [`Error::InvalidData`] when
/// the training split (or a present test split) holds no images.
pub(crate) fn scan(root: &Path) -> Result<Layout> {
    let mut layout = Layout::default();
    let top = entries(root)?;
    let find = |want: &str| {
        top.iter()
            .find(|(n, _, is_dir)| *is_dir && n.eq_ignore_ascii_case(want))
            .map(|e| e.0.clone())
    };

    // Without train/, the top-level folders are the classes.
    let Some(train) = find("train") else {
        layout.train = class_dirs(root, "the top level", &mut layout)?;
        if layout.train.is_empty() {
            let detail = "no class folders with PNG or JPEG files (expected <class>/<image> or \
                          train/<class>/<image>)";
            return Err(Error::invalid(root, detail));
        }
        return Ok(layout);
    };

    // With train/, the test split is test/ or else val/; nothing else counts.
    let test = find("test").or_else(|| find("val"));
    for (name, path, is_dir) in top {
        if name == train || Some(&name) == test.as_ref() {
            continue;
        }
        let why = match (foreign(&name), is_dir) {
            (Some(why), true) => format!("{why} folder"),
            (Some(why), false) => format!("{why} file"),
            (None, true) if name.eq_ignore_ascii_case("val") => {
                "not used: test/ is the test split".into()
            }
            (None, true) => format!("folder beside {train}/, not a split"),
            (None, false) => "loose file at the top level".into(),
        };
        layout.skipped.push((path, why));
    }
    for name in [Some(train), test].into_iter().flatten() {
        let classes = class_dirs(&root.join(&name), &format!("{name}/"), &mut layout)?;
        if classes.is_empty() {
            let detail = format!(
                "no class folders with PNG or JPEG files (expected {name}/<class>/<image>)"
            );
            return Err(Error::invalid(root.join(&name), detail));
        }
        if layout.train_dir.is_none() {
            (layout.train_dir, layout.train) = (Some(name), classes);
        } else {
            layout.test = Some((name, classes));
        }
    }
    Ok(layout)
}

/// One image file and its class.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    /// The file.
    pub path: PathBuf,
    /// Index into the class map.
    pub label: u32,
}

/// The files of each split, labelled with one class map.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Class names, the training split's folder names sorted.
    pub classes: Vec<String>,
    /// Training samples: class by class, files in name order.
    pub train: Vec<Sample>,
    /// Test samples, in the same order.
    pub test: Vec<Sample>,
    /// Findings for the report.
    pub warnings: Vec<String>,
}

/// Labels the files of `layout` with the training split's class map, and
/// holds out `options.val_fraction` of each class when there is no test split.
///
/// # Errors
///
/// [`Error::InvalidData`] for a test class the training split lacks;
/// [`Error::NoTestSplit`] when there is neither a test split nor a held-out
/// fraction; [`Error::InvalidArgument`] for a held-out fraction beside a
/// test split.
pub(crate) fn plan(root: &Path, layout: &Layout, options: &LoadOptions) -> Result<Plan> {
    let classes: Vec<String> = layout.train.iter().map(|c| c.name.clone()).collect();
    let mut plan =
        Plan { classes, train: Vec::new(), test: Vec::new(), warnings: layout.warnings.clone() };

    match (&layout.test, options.val_fraction) {
        (Some((name, _)), Some(_)) => {
            // Held out or not, the run would test on the folder's split.
            return Err(Error::arg(format!(
                "--val-fraction holds out part of a dataset that has no test split (an image \
                 folder without test/ or val/, or a .csv file), and {} has its own test split, \
                 {}",
                root.display(),
                root.join(name).display()
            )));
        }
        (Some((name, test)), None) => {
            plan.train = labelled(&layout.train, |i| i as u32);
            plan.test = test_samples(root, name, &plan.classes, test)?;
        }
        (None, Some(fraction)) => hold_out(&layout.train, fraction, options.seed, &mut plan),
        (None, None) => {
            return Err(Error::NoTestSplit {
                path: root.into(),
                expected: "a test/ or val/ folder with one sub-folder per class".into(),
                detail: format!(
                    "{}: no test/ or val/ folder to test on; pass --val-fraction F to hold out \
                     a fraction F of each class (e.g. 0.1)",
                    root.display()
                ),
            });
        }
    }

    // A class with nothing to test on still trains, but its accuracy is unknown.
    let mut tested = vec![false; plan.classes.len()];
    for sample in &plan.test {
        tested[sample.label as usize] = true;
    }
    for (class, _) in plan.classes.iter().zip(&tested).filter(|(_, &t)| !t) {
        plan.warnings.push(format!("class {class} has no test images"));
    }
    Ok(plan)
}

/// The files of `classes`, class `i` labelled `label(i)`.
fn labelled(classes: &[ClassDir], label: impl Fn(usize) -> u32) -> Vec<Sample> {
    let mut samples = Vec::new();
    for (i, class) in classes.iter().enumerate() {
        let label = label(i);
        samples.extend(class.files.iter().map(|path| Sample { path: path.clone(), label }));
    }
    samples
}

/// The test split's files labelled by class name.
fn test_samples(
    root: &Path,
    dir: &str,
    classes: &[String],
    test: &[ClassDir],
) -> Result<Vec<Sample>> {
    let index: HashMap<&str, u32> =
        classes.iter().enumerate().map(|(i, name)| (name.as_str(), i as u32)).collect();
    let extra: Vec<&str> =
        test.iter().map(|c| c.name.as_str()).filter(|name| !index.contains_key(name)).collect();
    if !extra.is_empty() {
        let detail = format!(
            "class folder{} {} not in the training split (training classes: {})",
            if extra.len() == 1 { "" } else { "s" },
            extra.join(", "),
            classes.join(", ")
        );
        return Err(Error::invalid(root.join(dir), detail));
    }
    Ok(labelled(test, |i| index[test[i].name.as_str()]))
}

/// Holds out `round(n · fraction)` files of each class of `n` (at most
/// `n - 1`), chosen by a seeded shuffle of that class alone; both parts keep
/// the files' name order.
fn hold_out(classes: &[ClassDir], fraction: f64, seed: u64, plan: &mut Plan) {
    for (label, class) in classes.iter().enumerate() {
        let n = class.files.len();
        let held = ((n as f64 * fraction).round() as usize).min(n.saturating_sub(1));
        let mut order: Vec<usize> = (0..n).collect();
        Rng::new(seed, HOLDOUT_STREAM + label as u64).shuffle(&mut order);
        let mut is_held = vec![false; n];
        for &i in &order[..held] {
            is_held[i] = true;
        }
        for (path, held) in class.files.iter().zip(is_held) {
            let sample = Sample { path: path.clone(), label: label as u32 };
            if held {
                plan.test.push(sample)
            } else {
                plan.train.push(sample)
            }
        }
    }
}

/// The largest side `--size` accepts; a classifier's input is far smaller,
/// and a typo such as `2240x2240` should not try to allocate the machine.
const MAX_SIDE: usize = 4096;

/// Checks the options this reader uses.
///
/// # Errors
///
/// [`Error::InvalidArgument`] naming the option and its value.
pub(crate) fn check_options(options: &LoadOptions) -> Result<()> {
    if let Some(c) = options.channels.filter(|&c| c != 1 && c != 3) {
        return Err(Error::arg(format!("--channels must be 1 or 3, found {c}")));
    }
    let outside = |side: usize| side == 0 || side > MAX_SIDE;
    if let Some((h, w)) = options.size.filter(|&(h, w)| outside(h) || outside(w)) {
        return Err(Error::arg(format!(
            "--size must be from 1x1 to {MAX_SIDE}x{MAX_SIDE}, found {h}x{w}"
        )));
    }
    if let Some(f) = options.val_fraction.filter(|f| !(*f > 0.0 && *f < 1.0)) {
        return Err(Error::arg(format!("--val-fraction must be between 0 and 1, found {f}")));
    }
    Ok(())
}

/// Reads the image folder `root` into a training and a test split.
///
/// The layout is `train/<class>/<image>` with `test/<class>/<image>` (or
/// `val/`), or `<class>/<image>` with [`LoadOptions::val_fraction`] held out
/// per class. Images are PNG or JPEG; every image is converted to
/// [`LoadOptions::channels`] (default: the channel count of most images,
/// 3 on a tie; alpha dropped, 16 bits scaled to 8) and, when
/// [`LoadOptions::size`] is given, resized with [`RESIZE_FILTER`]
/// (bilinear). The report lists what was skipped, left out, converted or
/// resized.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for an option out of range or a
/// `val_fraction` beside a test split; [`Error::NoTestSplit`] for no test
/// split and no `val_fraction`;
/// [`Error::InvalidData`] naming the folder or files for: no class folders,
/// a test class the training split lacks, images of different sizes without
/// `size` (examples of each size), and files that cannot be decoded unless
/// `skip_bad` (all of them, the first [`BAD_SHOWN`] named); [`Error::Io`]
/// when a folder cannot be listed.
pub fn read_image_folder(root: &Path, options: &LoadOptions) -> Result<(Split, ImportReport)> {
    check_options(options)?;
    let layout = scan(root)?;
    let plan = plan(root, &layout, options)?;
    decode_plan(root, plan, layout.skipped, options)
}

/// Reads only the test split of the image folder `root`: its `test/` (or
/// else `val/`) folder, whether or not a `train/` folder is beside it. The
/// classes are the test split's own class folders, sorted by name; whoever
/// reads it matches them to a model's classes by name. Images are converted
/// as in [`read_image_folder`]; give [`LoadOptions::channels`] and
/// [`LoadOptions::size`] to read them as a model takes them.
///
/// # Errors
///
/// [`Error::NoTestSplit`] when `root` has neither `test/` nor `val/`;
/// otherwise as [`read_image_folder`].
pub fn read_test_folder(root: &Path, options: &LoadOptions) -> Result<(Dataset, ImportReport)> {
    check_options(options)?;
    let Some((name, path)) = test_folder(&entries(root)?) else {
        return Err(Error::NoTestSplit {
            path: root.into(),
            expected: "a test/ or val/ folder with one sub-folder per class".into(),
            detail: format!("{}: no test/ or val/ folder to test on", root.display()),
        });
    };

    // The test split's own classes, every file labelled by its folder.
    let mut layout = Layout::default();
    let classes = class_dirs(&path, &format!("{name}/"), &mut layout)?;
    if classes.is_empty() {
        let detail =
            format!("no class folders with PNG or JPEG files (expected {name}/<class>/<image>)");
        return Err(Error::invalid(path, detail));
    }
    let plan = Plan {
        classes: classes.iter().map(|c| c.name.clone()).collect(),
        train: Vec::new(),
        test: labelled(&classes, |i| i as u32),
        warnings: layout.warnings,
    };
    let (split, report) = decode_plan(root, plan, layout.skipped, options)?;
    Ok((split.test, report))
}

/// The test split among the entries of an image folder's top level: `test/`,
/// or else `val/`, in any case; its name and path.
fn test_folder(top: &[(String, PathBuf, bool)]) -> Option<(String, PathBuf)> {
    let find =
        |want: &str| top.iter().find(|(n, _, is_dir)| *is_dir && n.eq_ignore_ascii_case(want));
    find("test").or_else(|| find("val")).map(|(name, path, _)| (name.clone(), path.clone()))
}

/// Whether the image folder `root` has a test split, `test/` or `val/`.
pub(crate) fn has_test_folder(root: &Path) -> bool {
    entries(root).is_ok_and(|top| test_folder(&top).is_some())
}

/// Decodes the files of `plan` as `options` say, into a training and a test
/// set; `skipped` goes into the report.
fn decode_plan(
    root: &Path,
    plan: Plan,
    skipped: Vec<(PathBuf, String)>,
    options: &LoadOptions,
) -> Result<(Split, ImportReport)> {
    let samples: Vec<&Sample> = plan.train.iter().chain(&plan.test).collect();

    // Every header first: one channel count and one size for the whole dataset.
    let paths: Vec<&Path> = samples.iter().map(|s| s.path.as_path()).collect();
    let mut probes = probe_files(&paths, false);
    let c = options.channels.unwrap_or_else(|| common_channels(headers(&probes)));
    let (h, w) = match options.size {
        Some(size) => size,
        None => common_size(root, &paths, &probes)?,
    };
    let target = Target { c, h, w };

    // Each image is decoded straight into its place in one buffer.
    let len = c * h * w;
    let total = samples.len() * len;
    let mut pixels = Vec::new();
    if pixels.try_reserve_exact(total).is_err() {
        return Err(Error::arg(format!(
            "{}: {} images of {c}x{h}x{w} need {:.1} GB of memory, more than this machine \
             can allocate; pass a smaller --size",
            root.display(),
            samples.len(),
            total as f64 / 1e9
        )));
    }
    pixels.resize(total, 0);
    let outcomes: Vec<std::result::Result<(), String>> = pixels
        .par_chunks_mut(len)
        .zip(paths.par_iter().zip(probes.par_iter_mut()))
        .map_init(Vec::new, |scratch, (slot, (path, probe))| {
            probe.header.as_ref().map_err(Clone::clone)?;
            decode(&probe.take_bytes(path)?, target, scratch, slot)
        })
        .collect();

    // Every bad file is listed at once, or left out when asked to.
    let bad: Vec<(PathBuf, String)> = samples
        .iter()
        .zip(&outcomes)
        .filter_map(|(s, outcome)| outcome.as_ref().err().map(|why| (s.path.clone(), why.clone())))
        .collect();
    if !bad.is_empty() && !options.skip_bad {
        return Err(bad_files(root, &bad));
    }

    let conversions = conversions(&probes, &outcomes, target);
    let split = assemble(root, &plan, pixels, &outcomes, target)?;
    let report = ImportReport { skipped, bad, conversions, warnings: plan.warnings };
    Ok((split, report))
}

/// The decoded images without the bad ones, as a training and a test set.
fn assemble(
    root: &Path,
    plan: &Plan,
    mut pixels: Vec<u8>,
    outcomes: &[std::result::Result<(), String>],
    target: Target,
) -> Result<Split> {
    // Shift the good images down over the bad ones, keeping their order.
    let len = target.c * target.h * target.w;
    let (mut train_labels, mut test_labels) = (Vec::new(), Vec::new());
    let samples = plan.train.iter().chain(&plan.test);
    let mut kept = 0;
    for (i, (sample, outcome)) in samples.zip(outcomes).enumerate() {
        if outcome.is_err() {
            continue;
        }
        if kept < i {
            pixels.copy_within(i * len..(i + 1) * len, kept * len);
        }
        kept += 1;
        let labels = if i < plan.train.len() { &mut train_labels } else { &mut test_labels };
        labels.push(sample.label);
    }
    pixels.truncate(kept * len);
    if train_labels.is_empty() && !plan.train.is_empty() {
        let detail = format!("none of the {} training images can be decoded", plan.train.len());
        return Err(Error::invalid(root, detail));
    }
    if test_labels.is_empty() && !plan.test.is_empty() {
        // Only --skip-bad gets here; a test split of nothing would score 0%.
        let detail = format!(
            "every test image was left out as bad: none of the {} can be decoded, so nothing is \
             left to test on",
            count(plan.test.len(), "test image")
        );
        return Err(Error::invalid(root, detail));
    }

    // The test images are the tail of the buffer.
    let test_pixels = pixels.split_off(train_labels.len() * len);
    let name = root.display().to_string();
    let shape = [target.c, target.h, target.w];
    let classes = plan.classes.clone();
    let train = Dataset::new(&name, pixels, train_labels, shape, classes.clone(), 255)?;
    let test = Dataset::new(&name, test_pixels, test_labels, shape, classes, 255)?;
    Ok(Split { train, test })
}

/// Counts of each conversion applied to the good images.
fn conversions(
    probes: &[Probe],
    outcomes: &[std::result::Result<(), String>],
    target: Target,
) -> BTreeMap<String, usize> {
    let plain = if target.c == 1 { Mode::Grey } else { Mode::Rgb };
    let mut counts = BTreeMap::new();
    for (probe, _) in probes.iter().zip(outcomes).filter(|(_, o)| o.is_ok()) {
        let Ok(header) = &probe.header else { continue };
        if header.mode != plain {
            let key = format!("{} -> {}", header.mode.name(), plain.name());
            *counts.entry(key).or_insert(0) += 1;
        }
        if (header.h, header.w) != (target.h, target.w) {
            let key = format!("resized to {}x{} (bilinear)", target.h, target.w);
            *counts.entry(key).or_insert(0) += 1;
        }
    }
    counts
}

/// The headers that could be read.
pub(crate) fn headers(probes: &[Probe]) -> impl Iterator<Item = &Header> {
    probes.iter().filter_map(|probe| probe.header.as_ref().ok())
}

/// The channel count of most images: 1 when grey images outnumber colour
/// ones, else 3.
pub(crate) fn common_channels<'a>(headers: impl Iterator<Item = &'a Header>) -> usize {
    let (mut grey, mut colour) = (0usize, 0usize);
    for header in headers {
        if header.mode.channels() == 1 {
            grey += 1;
        } else {
            colour += 1;
        }
    }
    if grey > colour {
        1
    } else {
        3
    }
}

/// The one `(h, w)` of every readable image.
///
/// # Errors
///
/// [`Error::InvalidData`] listing each size with its count and example
/// files; or listing the bad files when no image is readable.
fn common_size(root: &Path, paths: &[&Path], probes: &[Probe]) -> Result<(usize, usize)> {
    let mut by_size: BTreeMap<(usize, usize), Vec<&Path>> = BTreeMap::new();
    for (path, probe) in paths.iter().zip(probes) {
        if let Ok(header) = &probe.header {
            by_size.entry((header.h, header.w)).or_default().push(path);
        }
    }
    if by_size.is_empty() {
        // Leaving bad files out (--skip-bad) would leave nothing, so it is
        // not the advice.
        let bad: Vec<(PathBuf, String)> = paths
            .iter()
            .zip(probes)
            .filter_map(|(p, probe)| {
                probe.header.as_ref().err().map(|why| (p.to_path_buf(), why.clone()))
            })
            .collect();
        let detail = format!(
            "no decodable images are left: none of the {} can be decoded: {}",
            count(bad.len(), "file"),
            bad_list(root, &bad)
        );
        return Err(Error::invalid(root, detail));
    }
    if by_size.len() == 1 {
        return Ok(*by_size.keys().next().expect("one size"));
    }

    // The most common sizes first, each with a few of its files.
    let mut sizes: Vec<_> = by_size.into_iter().collect();
    sizes.sort_by_key(|(_, files)| std::cmp::Reverse(files.len()));
    let mut listed: Vec<String> = sizes
        .iter()
        .take(5)
        .map(|((h, w), files)| {
            let examples: Vec<String> =
                files.iter().take(SIZE_EXAMPLES).map(|p| relative(root, p)).collect();
            let more = if files.len() > SIZE_EXAMPLES { ", ..." } else { "" };
            format!("{h}x{w} in {} ({}{more})", count(files.len(), "file"), examples.join(", "))
        })
        .collect();
    if sizes.len() > 5 {
        listed.push(format!("{} other sizes", sizes.len() - 5));
    }
    let detail = format!(
        "images differ in size (height x width): {}; pass --size HxW to resize them all",
        listed.join("; ")
    );
    Err(Error::invalid(root, detail))
}

/// The error that lists files that cannot be decoded, when some can and
/// `--skip-bad` would leave the bad ones out.
fn bad_files(root: &Path, bad: &[(PathBuf, String)]) -> Error {
    let detail = format!(
        "{} cannot be decoded: {}; pass --skip-bad to leave them out",
        count(bad.len(), "file"),
        bad_list(root, bad)
    );
    Error::invalid(root, detail)
}

/// The first [`BAD_SHOWN`] of `bad` with their reasons, then how many more.
fn bad_list(root: &Path, bad: &[(PathBuf, String)]) -> String {
    let shown: Vec<String> = bad
        .iter()
        .take(BAD_SHOWN)
        .map(|(p, why)| format!("{} ({why})", relative(root, p)))
        .collect();
    match bad.len().saturating_sub(BAD_SHOWN) {
        0 => shown.join(", "),
        n => format!("{} and {n} more", shown.join(", ")),
    }
}

/// `path` relative to `root` when under it, for shorter messages.
pub(crate) fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// `1 file`, `2 files`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Channels and size every image is converted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// Channels, 1 or 3.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

/// The PNG file signature.
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Image formats read from folders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Png,
    Jpeg,
}

/// The bytes of `path`, or why they cannot be read.
pub(crate) fn read_file(path: &Path) -> std::result::Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

/// Bytes of files kept in memory between reading the headers and decoding,
/// so each file is opened once; files beyond it are read again. Opening a
/// file costs more than decoding a small image.
const KEEP_BYTES: usize = 1 << 30;

/// What the first pass over a file found.
#[derive(Debug)]
pub(crate) struct Probe {
    /// Size and pixel layout, or why the file is bad.
    pub header: std::result::Result<Header, String>,
    /// SHA-256 of the file, when asked for and readable.
    pub hash: Option<[u8; 32]>,
    /// The file's bytes, while [`KEEP_BYTES`] allows.
    pub bytes: Option<Vec<u8>>,
}

impl Probe {
    /// The file's bytes: kept from the first pass (and released), or read again.
    pub fn take_bytes(&mut self, path: &Path) -> std::result::Result<Vec<u8>, String> {
        match self.bytes.take() {
            Some(bytes) => Ok(bytes),
            None => read_file(path),
        }
    }
}

/// Reads every file once, in parallel: header, optional content hash, and
/// the bytes for the decoding pass.
pub(crate) fn probe_files(paths: &[&Path], hash: bool) -> Vec<Probe> {
    let kept = AtomicUsize::new(0);
    paths
        .par_iter()
        .map(|path| match read_file(path) {
            Err(why) => Probe { header: Err(why), hash: None, bytes: None },
            Ok(bytes) => {
                let header = read_header(&bytes);
                let hash = hash.then(|| Sha256::digest(&bytes).into());
                let room =
                    kept.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len() <= KEEP_BYTES;
                let bytes = (room && header.is_ok()).then_some(bytes);
                Probe { header, hash, bytes }
            }
        })
        .collect()
}

/// The format of `bytes`, known by its first bytes whatever the extension.
fn sniff(bytes: &[u8]) -> std::result::Result<Format, String> {
    if bytes.starts_with(&PNG_SIGNATURE) {
        return Ok(Format::Png);
    }
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        return Ok(Format::Jpeg);
    }
    let what = if bytes.is_empty() {
        "the file is empty"
    } else if bytes.starts_with(b"GIF8") {
        "it holds a GIF image"
    } else if bytes.starts_with(b"BM") {
        "it holds a BMP image"
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        "it holds a WebP image"
    } else {
        "its content is neither"
    };
    Err(format!("not a PNG or JPEG file: {what}"))
}

/// A decoder's error as one line.
fn reason(err: image::ImageError) -> String {
    err.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Size and pixel layout of the image in `bytes`, from its header. A JPEG is
/// walked to its end marker, since the decoder fills a cut-short file with
/// grey instead of failing.
pub(crate) fn read_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    let header = match sniff(bytes)? {
        Format::Png => png_header(bytes)?,
        Format::Jpeg => jpeg_header(bytes)?,
    };
    if header.h == 0 || header.w == 0 {
        return Err(format!("image is {}x{} pixels", header.h, header.w));
    }
    Ok(header)
}

/// The PNG header (IHDR), which always follows the signature: width and
/// height (big-endian u32), bit depth, colour type.
fn png_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    if bytes.len() < 33 || &bytes[12..16] != b"IHDR" {
        return Err("PNG file without its header (cut short?)".into());
    }
    let be = |at: usize| {
        u32::from_be_bytes(bytes[at..at + 4].try_into().expect("a 4-byte slice")) as usize
    };
    let (w, h, depth, colour) = (be(16), be(20), bytes[24], bytes[25]);
    let mode = match (colour, depth) {
        (0, 1 | 2 | 4 | 8) => Mode::Grey,
        (0, 16) => Mode::Grey16,
        (2, 8) => Mode::Rgb,
        (2, 16) => Mode::Rgb16,
        (3, 1 | 2 | 4 | 8) => Mode::Palette,
        (4, 8) => Mode::GreyAlpha,
        (4, 16) => Mode::GreyAlpha16,
        (6, 8) => Mode::Rgba,
        (6, 16) => Mode::Rgba16,
        _ => return Err(format!("PNG colour type {colour} with bit depth {depth} is not valid")),
    };
    Ok(Header { h, w, mode })
}

/// Walks the marker segments of a JPEG up to its end-of-image marker and
/// returns the size and components of its frame header (SOFn). Segments are
/// skipped by their length (so an embedded thumbnail is not mistaken for
/// the image), entropy-coded data up to the next marker (`FF` followed by
/// neither `00` nor a restart code).
pub(crate) fn jpeg_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    let truncated = || "truncated: the file ends before its end-of-image marker".to_string();
    let mut frame = None;
    let mut at = 2;
    loop {
        // Tolerate stray bytes and fill bytes before a marker, as decoders do.
        while at < bytes.len() && (bytes[at] != 0xff || bytes.get(at + 1) == Some(&0xff)) {
            at += 1;
        }
        let marker = *bytes.get(at + 1).ok_or_else(truncated)?;
        at += 2;
        match marker {
            0xd9 => return frame.ok_or_else(|| "JPEG file without a frame header".to_string()),
            0x01 | 0xd0..=0xd7 => continue,
            _ => {}
        }
        let segment = bytes.get(at..at + 2).ok_or_else(truncated)?;
        let len = usize::from(u16::from_be_bytes([segment[0], segment[1]]));

        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC): precision,
        // height, width, components.
        if matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
            let sof = bytes.get(at + 2..at + 8).ok_or_else(truncated)?;
            let (h, w) =
                (u16::from_be_bytes([sof[1], sof[2]]), u16::from_be_bytes([sof[3], sof[4]]));
            let mode = match sof[5] {
                1 => Mode::Grey,
                3 | 4 => Mode::Rgb,
                n => return Err(format!("JPEG with {n} colour components is not supported")),
            };
            frame = Some(Header { h: usize::from(h), w: usize::from(w), mode });
        }
        at += len;
        if marker == 0xda {
            while at + 1 < bytes.len()
                && !(bytes[at] == 0xff
                    && bytes[at + 1] != 0
                    && !(0xd0..=0xd7).contains(&bytes[at + 1]))
            {
                at += 1;
            }
        }
    }
}

/// Decodes the image in `bytes` into `out` as `target.c` planes of
/// `target.h × target.w`, resizing with [`RESIZE_FILTER`] when its size
/// differs. `scratch` is reused between calls.
pub(crate) fn decode(
    bytes: &[u8],
    target: Target,
    scratch: &mut Vec<u8>,
    out: &mut [u8],
) -> std::result::Result<(), String> {
    match sniff(bytes)? {
        Format::Png => {
            decode_with(PngDecoder::new(Cursor::new(bytes)).map_err(reason)?, target, scratch, out)
        }
        Format::Jpeg => {
            decode_with(JpegDecoder::new(Cursor::new(bytes)).map_err(reason)?, target, scratch, out)
        }
    }
}

/// [`decode`] with a format's decoder. An 8-bit image that already has the
/// target's channels and size is decoded into `scratch` and split into
/// planes; any other goes through the `image` crate's conversions, as
/// `xent predict` does: resize first, then convert.
fn decode_with(
    decoder: impl ImageDecoder,
    target: Target,
    scratch: &mut Vec<u8>,
    out: &mut [u8],
) -> std::result::Result<(), String> {
    let (w, h) = decoder.dimensions();
    let same_size = (h as usize, w as usize) == (target.h, target.w);
    let same_mode =
        matches!((decoder.color_type(), target.c), (ColorType::L8, 1) | (ColorType::Rgb8, 3));
    if same_size && same_mode {
        scratch.resize(target.c * target.h * target.w, 0);
        decoder.read_image(scratch).map_err(reason)?;
        to_planes(scratch, target.c, out);
        return Ok(());
    }

    let mut image = DynamicImage::from_decoder(decoder).map_err(reason)?;
    if !same_size {
        image = image.resize_exact(target.w as u32, target.h as u32, RESIZE_FILTER);
    }
    match target.c {
        1 => to_planes(image.into_luma8().as_raw(), 1, out),
        _ => to_planes(image.into_rgb8().as_raw(), 3, out),
    }
    Ok(())
}

/// Interleaved pixels `[h, w, c]` to planes `[c, h, w]`.
fn to_planes(interleaved: &[u8], c: usize, out: &mut [u8]) {
    debug_assert_eq!(interleaved.len(), out.len(), "to_planes: one output value per input value");
    if c == 1 {
        out.copy_from_slice(interleaved);
        return;
    }
    let plane = out.len() / 3;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let planes = r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut());
    for (px, ((r, g), b)) in interleaved.chunks_exact(3).zip(planes) {
        (*r, *g, *b) = (px[0], px[1], px[2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal JPEG marker stream: SOI, an APP0 segment, a frame header
    /// (SOF0: 8 bits, 2 high, 3 wide, one component), SOS with two bytes of
    /// header and entropy data that holds a stuffed `FF 00` and a restart
    /// marker, then EOI.
    fn jpeg_stream() -> Vec<u8> {
        let mut bytes = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0xaa, 0xbb];
        bytes
            .extend([0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x02, 0x00, 0x03, 0x01, 0x01, 0x11, 0x00]);
        bytes.extend([0xff, 0xda, 0x00, 0x04, 0x01, 0x02]);
        bytes.extend([0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56]);
        bytes.extend([0xff, 0xd9]);
        bytes
    }

    #[test]
    fn jpeg_end_marker_is_found_past_stuffed_bytes() {
        let bytes = jpeg_stream();
        let header = Header { h: 2, w: 3, mode: Mode::Grey };
        assert_eq!(jpeg_header(&bytes), Ok(header));

        // Data after the end marker (as some cameras append) is allowed.
        let mut trailing = bytes.clone();
        trailing.extend([0x00, 0xff, 0xda]);
        assert_eq!(jpeg_header(&trailing), Ok(header));

        // Any cut before the end marker is found.
        for cut in 3..bytes.len() - 1 {
            let err = jpeg_header(&bytes[..cut]).unwrap_err();
            assert!(err.starts_with("truncated"), "cut {cut}: {err}");
        }
    }

    #[test]
    fn jpeg_end_marker_inside_a_segment_does_not_count() {
        // An APP1 segment whose payload holds FF D9 (as an embedded
        // thumbnail does), then a scan cut short.
        let mut bytes = vec![0xff, 0xd8, 0xff, 0xe1, 0x00, 0x06, 0xff, 0xd8, 0xff, 0xd9];
        bytes.extend(&jpeg_stream()[8..21]);
        bytes.extend([0xff, 0xda, 0x00, 0x02, 0x11, 0x22]);
        assert!(jpeg_header(&bytes).unwrap_err().starts_with("truncated"));

        // Complete, but without a frame header.
        let bare = [0xff, 0xd8, 0xff, 0xda, 0x00, 0x02, 0x11, 0xff, 0xd9];
        assert_eq!(jpeg_header(&bare), Err("JPEG file without a frame header".into()));
    }

    #[test]
    fn png_header_gives_size_and_mode() {
        let mut bytes = PNG_SIGNATURE.to_vec();
        bytes.extend([0, 0, 0, 13]);
        bytes.extend(b"IHDR");
        bytes.extend(7u32.to_be_bytes());
        bytes.extend(5u32.to_be_bytes());
        bytes.extend([16, 6, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(png_header(&bytes), Ok(Header { h: 5, w: 7, mode: Mode::Rgba16 }));
        bytes[25] = 3;
        assert!(png_header(&bytes).unwrap_err().contains("colour type 3 with bit depth 16"));
        assert!(png_header(&bytes[..20]).is_err());
    }

    #[test]
    fn sniffing_names_what_a_file_holds() {
        assert_eq!(sniff(b"GIF89a..."), Err("not a PNG or JPEG file: it holds a GIF image".into()));
        assert!(sniff(b"").unwrap_err().contains("empty"));
        assert!(sniff(b"hello").unwrap_err().contains("neither"));
        assert_eq!(sniff(&jpeg_stream()), Ok(Format::Jpeg));
        assert_eq!(read_header(&jpeg_stream()).map(|h| h.w), Ok(3));
    }

    #[test]
    fn foreign_names_are_recognised() {
        for name in
            [".DS_Store", "._x.png", ".ipynb_checkpoints", "__MACOSX", "Thumbs.db", "desktop.ini"]
        {
            assert!(foreign(name).is_some(), "{name}");
        }
        for name in ["cat", "x.png", "train", "macosx"] {
            assert!(foreign(name).is_none(), "{name}");
        }
        assert_eq!(not_an_image(Path::new("a/B.JPEG")), None);
        assert_eq!(not_an_image(Path::new("a/notes.txt")), Some("not an image (.txt)".into()));
        assert!(not_an_image(Path::new("a/x.gif")).expect("skipped").contains("convert"));
        assert!(not_an_image(Path::new("a/SHA256SUMS")).expect("skipped").contains("no extension"));
    }

    #[test]
    fn planes_are_split_from_interleaved_pixels() {
        let mut out = [0u8; 6];
        to_planes(&[1, 2, 3, 4, 5, 6], 3, &mut out);
        assert_eq!(out, [1, 4, 2, 5, 3, 6]);
        to_planes(&[9, 8, 7, 6, 5, 4], 1, &mut out);
        assert_eq!(out, [9, 8, 7, 6, 5, 4]);
    }

    #[test]
    fn hold_out_is_stratified_seeded_and_ordered() {
        let class = |name: &str, n: usize| ClassDir {
            name: name.into(),
            files: (0..n).map(|i| PathBuf::from(format!("{name}/{i:02}.png"))).collect(),
        };
        let classes = [class("a", 10), class("b", 5), class("c", 1)];
        let split = |seed| {
            let mut plan = Plan { classes: vec![], train: vec![], test: vec![], warnings: vec![] };
            hold_out(&classes, 0.3, seed, &mut plan);
            let paths = |s: &[Sample]| s.iter().map(|s| s.path.clone()).collect::<Vec<_>>();
            (paths(&plan.train), paths(&plan.test))
        };
        let (train, test) = split(1);

        // round(10 · 0.3) = 3 and round(5 · 0.3) = 2 held out; a class of one stays in training.
        let in_class =
            |paths: &[PathBuf], c: &str| paths.iter().filter(|p| p.starts_with(c)).count();
        assert_eq!([in_class(&test, "a"), in_class(&test, "b"), in_class(&test, "c")], [3, 2, 0]);
        assert_eq!(train.len() + test.len(), 16);
        assert!(test.windows(2).all(|w| w[0] < w[1]) && train.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(split(1), (train, test.clone()));
        assert_ne!(split(2).1, test);
    }

    #[test]
    fn options_out_of_range_are_refused() {
        let bad = [
            LoadOptions { channels: Some(2), ..LoadOptions::default() },
            LoadOptions { size: Some((0, 4)), ..LoadOptions::default() },
            LoadOptions { val_fraction: Some(1.0), ..LoadOptions::default() },
            LoadOptions { val_fraction: Some(f64::NAN), ..LoadOptions::default() },
        ];
        for options in bad {
            assert!(
                matches!(check_options(&options), Err(Error::InvalidArgument(_))),
                "{options:?}"
            );
        }
        assert!(check_options(&LoadOptions::default()).is_ok());
    }

    #[test]
    fn resize_filter_is_the_one_predict_uses() {
        assert_eq!(RESIZE_FILTER, crate::io::RESIZE_FILTER);
    }
}
