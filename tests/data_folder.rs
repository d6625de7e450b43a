//! The image-folder reader and `inspect` on folders written here with the
//! `image` and `png` crates: foreign entries, bad files, channel and size
//! policies, class maps across splits, held-out fractions, duplicates; and
//! on the real CIFAR-10 JPEG folder when `$XENT_DATA` holds it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::{ImageBuffer, Luma, Rgb, Rgba};
use tempfile::TempDir;
use xent::data::{
    inspect_folder, is_image_folder, load_from, read_image_folder, ImportReport, Leak, LoadOptions,
};

/// Writes `bytes` to `path`, creating its folders.
fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A grey `h`×`w` PNG of one value.
fn grey(path: &Path, h: u32, w: u32, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    ImageBuffer::from_pixel(w, h, Luma([value])).save(path).unwrap();
}

/// An RGB image of one colour, PNG or JPEG by extension.
fn rgb(path: &Path, h: u32, w: u32, value: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    ImageBuffer::from_pixel(w, h, Rgb(value)).save(path).unwrap();
}

/// A palette PNG of `indices` into `palette` (RGB triples), with per-entry
/// alpha when `trns` is given.
fn palette_png(path: &Path, h: u32, w: u32, palette: &[u8], trns: Option<&[u8]>, indices: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_palette(palette.to_vec());
    if let Some(trns) = trns {
        encoder.set_trns(trns.to_vec());
    }
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(indices).unwrap();
}

/// `split/class/i.png` for each class and count (`class/i.png` when `split`
/// is empty), 4×4 grey of value `10 · i + 100 · class index`.
fn classes(root: &Path, split: &str, counts: &[(&str, usize)]) {
    for (k, (class, n)) in counts.iter().enumerate() {
        for i in 0..*n {
            let value = (10 * i + 100 * k) as u8;
            grey(&root.join(split).join(class).join(format!("{i}.png")), 4, 4, value);
        }
    }
}

/// The paths of `notes` relative to `root`, sorted.
fn relative(root: &Path, notes: &[(PathBuf, String)]) -> Vec<String> {
    let mut paths: Vec<String> = notes
        .iter()
        .map(|(p, _)| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    paths.sort();
    paths
}

fn reason<'a>(report: &'a ImportReport, name: &str) -> &'a str {
    let found = report.skipped.iter().chain(&report.bad).find(|(p, _)| p.ends_with(name));
    &found.unwrap_or_else(|| panic!("{name} is not in the report")).1
}

fn load(root: &Path, options: LoadOptions) -> (xent::data::Split, ImportReport) {
    read_image_folder(root, &options).unwrap_or_else(|e| panic!("{e}"))
}

fn error(root: &Path, options: LoadOptions) -> String {
    let err = read_image_folder(root, &options).expect_err("the folder is refused").to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    err
}

#[test]
fn hidden_and_foreign_entries_are_skipped_and_counted() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    classes(root, "train", &[("a", 2), ("b", 3)]);
    classes(root, "test", &[("a", 1), ("b", 1)]);

    // What file managers, archivers and notebooks leave behind.
    write(&root.join(".DS_Store"), b"\0\0\0\x01Bud1");
    write(&root.join("train/a/.DS_Store"), b"\0\0\0\x01Bud1");
    write(&root.join("train/a/._0.png"), b"\0\x05\x16\x07AppleDouble");
    write(&root.join("__MACOSX/train/a/._0.png"), b"\0\x05\x16\x07AppleDouble");
    write(&root.join("train/b/Thumbs.db"), b"\xd0\xcf\x11\xe0");
    write(&root.join("train/b/notes.txt"), b"collected in 2024");
    write(&root.join("test/desktop.ini"), b"[.ShellClassInfo]");
    write(&root.join("README.md"), b"# my data");
    grey(&root.join("train/.ipynb_checkpoints/x.png"), 4, 4, 0);

    let (split, report) = load(root, LoadOptions::default());
    assert_eq!(split.train.classes(), ["a", "b"]);
    assert_eq!(split.train.class_counts(), [2, 3]);
    assert_eq!(split.test.class_counts(), [1, 1]);
    let skipped = [
        ".DS_Store",
        "README.md",
        "__MACOSX",
        "test/desktop.ini",
        "train/.ipynb_checkpoints",
        "train/a/.DS_Store",
        "train/a/._0.png",
        "train/b/Thumbs.db",
        "train/b/notes.txt",
    ];
    assert_eq!(relative(root, &report.skipped), skipped);
    assert_eq!(reason(&report, "notes.txt"), "not an image (.txt)");
    assert_eq!(reason(&report, "README.md"), "loose file at the top level");
    assert_eq!(reason(&report, "__MACOSX"), "macOS archive metadata folder");
    assert!(report.bad.is_empty() && report.conversions.is_empty() && report.warnings.is_empty());

    // Samples: classes in name order, files in name order, max value 255.
    let firsts: Vec<u8> = (0..split.train.len()).map(|i| split.train.image(i)[0]).collect();
    assert_eq!(firsts, [0, 10, 100, 110, 120]);
    assert_eq!(split.train.labels(), [0, 0, 1, 1, 1]);
    assert_eq!(split.train.sample_shape(), [1, 4, 4]);
    assert_eq!(split.train.max_value(), 255);

    // The same folder through the generic loader.
    let by_path = load_from(root.to_str().unwrap(), Path::new("/nonexistent")).unwrap();
    assert_eq!(by_path, split);
}

#[test]
fn bad_files_are_listed_in_one_error_or_skipped() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    for split in ["train", "test"] {
        for class in ["a", "b"] {
            rgb(&root.join(format!("{split}/{class}/0.png")), 16, 16, [1, 2, 3]);
        }
    }

    // A JPEG cut inside its image data (the decoder alone would fill the
    // rest with grey), and text under a .png name.
    let noise =
        ImageBuffer::from_fn(16, 16, |x, y| Rgb([(x * 37 + y * 91) as u8, (x * y) as u8, 7]));
    let mut jpeg = Vec::new();
    noise.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
    write(&root.join("train/a/cut.jpg"), &jpeg[..jpeg.len() - 40]);
    write(&root.join("test/b/fake.png"), b"this is not a PNG");

    let err = error(root, LoadOptions::default());
    assert!(err.contains("2 files cannot be decoded"), "{err}");
    assert!(err.contains("train/a/cut.jpg (truncated"), "{err}");
    assert!(err.contains("test/b/fake.png (not a PNG or JPEG file"), "{err}");
    assert!(err.contains("--skip-bad"), "{err}");

    let (split, report) = load(root, LoadOptions { skip_bad: true, ..LoadOptions::default() });
    assert_eq!(relative(root, &report.bad), ["test/b/fake.png", "train/a/cut.jpg"]);
    assert_eq!((split.train.len(), split.test.len()), (2, 2));
}

#[test]
fn channels_follow_most_images_and_conversions_are_counted() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    classes(root, "train", &[("a", 2), ("b", 1)]);
    classes(root, "test", &[("a", 1), ("b", 1)]);
    std::fs::create_dir_all(root.join("train/b")).unwrap();
    ImageBuffer::from_pixel(4, 4, Rgba([10u8, 20, 30, 0]))
        .save(root.join("train/b/rgba.png"))
        .unwrap();

    // Five grey images to one RGBA: grey wins; luminance of (10, 20, 30).
    let (split, report) = load(root, LoadOptions::default());
    assert_eq!(split.train.sample_shape(), [1, 4, 4]);
    assert_eq!(report.conversions.iter().collect::<Vec<_>>(), [(&"RGBA -> grey".to_string(), &1)]);
    let luma = split.train.image(3)[0];
    assert!((18..=19).contains(&luma), "luma {luma}");

    // Asked for RGB: the grey images are replicated, alpha is dropped.
    let (split, report) = load(root, LoadOptions { channels: Some(3), ..LoadOptions::default() });
    assert_eq!(split.train.sample_shape(), [3, 4, 4]);
    assert_eq!(report.conversions["grey -> RGB"], 5);
    assert_eq!(report.conversions["RGBA -> RGB"], 1);
    let rgba = split.train.image(3);
    assert_eq!((rgba[0], rgba[16], rgba[32]), (10, 20, 30));
    assert_eq!(split.train.image(1), &[10; 48][..]);
}

#[test]
fn sixteen_bit_and_palette_pngs_are_converted() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("train/a")).unwrap();
    let grey16 = ImageBuffer::<Luma<u16>, Vec<u16>>::from_pixel(2, 2, Luma([257 * 100]));
    grey16.save(root.join("train/a/0.png")).unwrap();
    let rgb16 = ImageBuffer::<Rgb<u16>, Vec<u16>>::from_pixel(2, 2, Rgb([65535, 0, 257 * 128]));
    rgb16.save(root.join("train/a/1.png")).unwrap();
    let red_blue = [255, 0, 0, 0, 0, 255];
    palette_png(&root.join("train/b/0.png"), 2, 2, &red_blue, None, &[0, 1, 1, 0]);
    palette_png(&root.join("train/b/1.png"), 2, 2, &red_blue, Some(&[255, 128]), &[1, 1, 1, 1]);
    grey(&root.join("test/a/0.png"), 2, 2, 9);
    rgb(&root.join("test/b/0.png"), 2, 2, [1, 2, 3]);

    // Four colour images to one grey: RGB; 16 bits scaled to 8.
    let (split, report) = load(root, LoadOptions::default());
    assert_eq!(split.train.sample_shape(), [3, 2, 2]);
    let conversions: Vec<(&str, usize)> =
        report.conversions.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let expected = [
        ("RGB 16-bit -> RGB", 1),
        ("grey -> RGB", 1),
        ("grey 16-bit -> RGB", 1),
        ("palette -> RGB", 2),
    ];
    assert_eq!(conversions, expected);
    assert_eq!(split.train.image(0), &[100; 12][..]);
    assert_eq!(split.train.image(1), &[255, 255, 255, 255, 0, 0, 0, 0, 128, 128, 128, 128][..]);
    assert_eq!(split.train.image(2), &[255, 0, 0, 255, 0, 0, 0, 0, 0, 255, 255, 0][..]);
    assert_eq!(split.train.image(3), &[0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255][..]);
}

#[test]
fn mixed_sizes_are_refused_with_examples_or_resized() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    for path in ["train/a/0.png", "train/a/1.png", "train/b/0.png", "test/a/0.png", "test/b/0.png"]
    {
        grey(&root.join(path), 8, 8, 77);
    }
    grey(&root.join("train/b/wide.png"), 6, 10, 77);

    let err = error(root, LoadOptions::default());
    let sizes = "8x8 in 5 files (train/a/0.png, train/a/1.png, train/b/0.png, ...); \
                 6x10 in 1 file (train/b/wide.png)";
    assert!(err.contains(sizes), "{err}");
    assert!(err.contains("pass --size HxW"), "{err}");

    let (split, report) = load(root, LoadOptions { size: Some((4, 5)), ..LoadOptions::default() });
    assert_eq!(split.train.sample_shape(), [1, 4, 5]);
    assert_eq!(report.conversions["resized to 4x5 (bilinear)"], 6);
    assert_eq!(split.train.image(3), &[77; 20][..]);
}

#[test]
fn test_classes_are_mapped_by_name() {
    // A training class without test images: a warning, labels by name.
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    classes(root, "train", &[("a", 1), ("b", 1), ("c", 1)]);
    grey(&root.join("test/a/0.png"), 4, 4, 1);
    grey(&root.join("test/c/0.png"), 4, 4, 3);
    let (split, report) = load(root, LoadOptions::default());
    assert_eq!(split.test.labels(), [0, 2]);
    assert_eq!(split.test.classes(), ["a", "b", "c"]);
    assert_eq!(report.warnings, ["class b has no test images"]);

    // A test class the training split lacks: an error naming it.
    grey(&root.join("test/zebra/0.png"), 4, 4, 3);
    let err = error(root, LoadOptions::default());
    assert!(err.contains("test: class folder zebra not in the training split"), "{err}");
    assert!(err.contains("training classes: a, b, c"), "{err}");
}

#[test]
fn val_fraction_holds_out_each_class_by_seed() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    classes(root, "", &[("a", 10), ("b", 5)]);
    let options = |seed| LoadOptions { val_fraction: Some(0.2), seed, ..LoadOptions::default() };

    let (split, report) = load(root, options(3));
    assert_eq!(split.train.class_counts(), [8, 4]);
    assert_eq!(split.test.class_counts(), [2, 1]);
    assert!(report.warnings.is_empty());

    // Both parts keep the class-then-name order; the same seed repeats them.
    for ds in [&split.train, &split.test] {
        let firsts: Vec<u8> = (0..ds.len()).map(|i| ds.image(i)[0]).collect();
        assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{firsts:?}");
    }
    assert_eq!(load(root, options(3)).0, split);
    assert_ne!(load(root, options(4)).0.test, split.test);
}

#[test]
fn a_folder_without_test_split_needs_val_fraction() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    classes(root, "", &[("a", 2), ("b", 2)]);
    let err = error(root, LoadOptions::default());
    assert!(err.contains("no test/ or val/ folder") && err.contains("--val-fraction"), "{err}");

    // train/ alone is the same; a val/ split is taken as the test split.
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    classes(root, "train", &[("a", 2), ("b", 2)]);
    assert!(error(root, LoadOptions::default()).contains("--val-fraction"));
    classes(root, "val", &[("a", 1), ("b", 1)]);
    let (split, _) = load(root, LoadOptions::default());
    assert_eq!((split.train.len(), split.test.len()), (4, 2));

    // A held-out fraction beside it would change nothing, so it is refused.
    let options = LoadOptions { val_fraction: Some(0.5), ..LoadOptions::default() };
    let err = read_image_folder(root, &options).expect_err("refused");
    assert!(matches!(err, xent::Error::InvalidArgument(_)), "{err}");
    let want = format!("has its own test split, {}", root.join("val").display());
    assert!(err.to_string().contains(&want), "{err}");
}

#[test]
fn inspect_finds_leaks_repeats_and_pixel_statistics() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    grey(&root.join("train/a/0.png"), 4, 4, 0);
    grey(&root.join("train/a/1.png"), 4, 4, 255);
    grey(&root.join("train/b/0.png"), 4, 4, 51);
    std::fs::copy(root.join("train/b/0.png"), root.join("train/b/1.png")).unwrap();
    grey(&root.join("test/a/0.png"), 4, 4, 9);
    std::fs::copy(root.join("train/a/0.png"), root.join("test/a/copy.png")).unwrap();
    grey(&root.join("test/b/0.png"), 4, 4, 8);
    write(&root.join("SHA256SUMS"), b"...");

    let report = inspect_folder(root, &LoadOptions::default()).unwrap();
    let leak = Leak { test: "test/a/copy.png".into(), train: "train/a/0.png".into() };
    assert_eq!(report.leaks, [leak]);
    assert_eq!(report.duplicates["train"], 1);
    assert_eq!(report.duplicates["test"], 0);
    assert_eq!(report.classes, ["a", "b"]);
    assert_eq!(report.splits[1].images, 3);
    assert_eq!(report.modes["grey"], 7);
    assert_eq!(report.skipped[0].path, "SHA256SUMS");

    // Scaled values 0, 1, 0.2, 0.2: mean 0.35, variance 0.59 / 4.
    assert_eq!(report.channels, 1);
    assert!((report.mean[0] - 0.35).abs() < 1e-12, "{:?}", report.mean);
    assert!((report.std[0] - (0.59f64 / 4.0).sqrt()).abs() < 1e-12, "{:?}", report.std);
}

#[test]
fn split_folders_are_found_whatever_their_case() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    classes(root, "Train", &[("a", 2), ("b", 1)]);
    classes(root, "VAL", &[("a", 1), ("b", 1)]);
    let (split, report) = load(root, LoadOptions::default());
    assert_eq!(split.train.classes(), ["a", "b"]);
    assert_eq!((split.train.len(), split.test.len()), (3, 2));
    assert!(report.skipped.is_empty() && report.warnings.is_empty());
}

#[test]
fn image_folders_are_told_from_idx_folders() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    assert!(!is_image_folder(root));
    std::fs::create_dir_all(root.join(".hidden")).unwrap();
    assert!(!is_image_folder(root));
    classes(root, "", &[("a", 1)]);
    assert!(is_image_folder(root));
    write(&root.join("train-images-idx3-ubyte.gz"), b"");
    assert!(!is_image_folder(root));

    // A class folder of GIFs is an image folder whose error says what it lacks.
    let dir = TempDir::new().unwrap();
    write(&dir.path().join("a/0.gif"), b"GIF89a");
    assert!(is_image_folder(dir.path()));
    let err = error(dir.path(), LoadOptions::default());
    assert!(err.contains("no class folders with PNG or JPEG files"), "{err}");
}

/// `$XENT_DATA/cifar10-jpg`, or `None` (with a note) when absent.
fn cifar10_jpg() -> Option<PathBuf> {
    let dir = std::env::var_os("XENT_DATA").map(|d| PathBuf::from(d).join("cifar10-jpg"));
    match dir {
        Some(dir) if dir.join("train").is_dir() => Some(dir),
        _ => {
            eprintln!("skipped: $XENT_DATA/cifar10-jpg not present");
            None
        }
    }
}

#[test]
fn cifar10_jpg_loads_with_its_classes_and_counts() {
    let Some(root) = cifar10_jpg() else { return };
    let started = Instant::now();
    let (split, report) = load(&root, LoadOptions::default());
    eprintln!("cifar10-jpg: 60,000 images decoded in {:.2} s", started.elapsed().as_secs_f64());

    let names =
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
    assert_eq!(split.train.classes(), names);
    assert_eq!(split.train.class_counts(), [5000; 10]);
    assert_eq!(split.test.class_counts(), [1000; 10]);
    assert_eq!(split.train.sample_shape(), [3, 32, 32]);
    assert_eq!(relative(&root, &report.skipped), ["SHA256SUMS"]);
    assert!(report.bad.is_empty() && report.conversions.is_empty() && report.warnings.is_empty());
}
