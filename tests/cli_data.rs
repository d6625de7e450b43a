//! The `xent` binary on image folders written here: `xent data inspect`
//! (text and JSON, folders and named datasets), and `xent train` end to end
//! with the import options, its report and its one-line errors.

use std::path::Path;
use std::process::{Command, Output};

use image::{ImageBuffer, Rgb};
use serde_json::Value;
use tempfile::TempDir;

fn xent(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xent"));
    command.args(args).env("XENT_DATA", "/nonexistent-xent-data");
    command.output().expect("the xent binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An RGB `h`×`w` PNG whose pixel `(x, y)` is `base + (x + y, 2x, 3y)`.
fn rgb(path: &Path, h: u32, w: u32, base: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let pixel =
        |x: u32, y: u32| Rgb([base + (x + y) as u8, base + 2 * x as u8, base + 3 * y as u8]);
    ImageBuffer::from_fn(w, h, pixel).save(path).unwrap();
}

/// `train/<class>/` with `train` images and `test/<class>/` with `test`
/// images of 8×8 for the classes `cat` and `dog`, plus a `.DS_Store`. Image
/// `i` of class `k` has base `100k + 3i` (+1 in the test split), mod 120.
fn pets(root: &Path, train: usize, test: usize) {
    for (k, class) in ["cat", "dog"].iter().enumerate() {
        for (split, n, offset) in [("train", train, 0), ("test", test, 1)] {
            for i in 0..n {
                let base = ((100 * k + 3 * i + offset) % 120) as u8;
                rgb(&root.join(format!("{split}/{class}/{i:03}.png")), 8, 8, base);
            }
        }
    }
    std::fs::write(root.join(".DS_Store"), b"\0\0\0\x01Bud1").unwrap();
}

#[test]
fn inspect_prints_a_summary_and_json() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    pets(root, 3, 1);
    let path = root.to_str().unwrap();

    // Text: the class table and the findings, one labelled line each.
    let out = xent(&["data", "inspect", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "classes   2: cat, dog",
        "images    train 6 | test 2",
        "sizes     8x8: 8 (height x width)",
        "modes     RGB: 8 -> 3 channel(s)",
        "skipped   1",
        ".DS_Store: hidden file",
        "leaks     0 test image(s)",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    assert!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["dog", "3", "1"]));

    // JSON: one object with the same numbers; the red channel's mean is
    // the mean of base + x + y over the training images.
    let out = xent(&["data", "inspect", path, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["classes"], serde_json::json!(["cat", "dog"]));
    assert_eq!(json["splits"][0]["classes"][1], serde_json::json!({"class": "dog", "images": 3}));
    assert_eq!(json["sizes"], serde_json::json!([{"height": 8, "width": 8, "images": 8}]));
    assert_eq!(json["channels"], 3);
    let bases = [0.0, 3.0, 6.0, 100.0, 103.0, 106.0];
    let red_mean = (bases.iter().sum::<f64>() / 6.0 + 7.0) / 255.0;
    let got = json["mean"][0].as_f64().unwrap();
    assert!((got - red_mean).abs() < 1e-12, "{got} vs {red_mean}");
    assert_eq!(json["leaks"], serde_json::json!([]));
}

#[test]
fn inspect_reports_what_applies_to_a_named_dataset() {
    let out = xent(&["data", "inspect", "digits", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["format"], "embedded");
    assert_eq!(json["max_value"], 16);
    assert_eq!(json["sizes"], serde_json::json!([{"height": 8, "width": 8, "images": 1797}]));
    assert_eq!(json["modes"], serde_json::json!({"grey": 1797}));
    assert_eq!(json["classes"].as_array().unwrap().len(), 10);
    let mean = json["mean"][0].as_f64().unwrap();
    assert!(mean > 0.1 && mean < 0.5, "{mean}");

    // A name that is not a dataset: one line, exit 2.
    let out = xent(&["data", "inspect", "mnits"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: unknown dataset \"mnits\""), "{}", stderr(&out));
}

#[test]
fn train_on_an_image_folder_keeps_its_class_names() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("pets");
    pets(&data, 100, 2);
    let run = dir.path().join("run");
    let model = "conv(4,3,pad=1)-relu-maxpool(2)-flatten-linear";
    let args = ["train", "--dataset", data.to_str().unwrap(), "--model", model, "--epochs", "1"];
    let out = xent(&[&args[..], &["--out", run.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("import skipped 1 entry (hidden"), "{text}");
    assert!(text.contains("input=[3, 8, 8] classes=2 train=200 test=4"), "{text}");

    let model = xent::io::Model::load(&run).unwrap();
    assert_eq!(model.info.classes, ["cat", "dog"]);
    assert_eq!(model.info.input_shape, [3, 8, 8]);
}

#[test]
fn train_lists_bad_files_and_skips_them_when_asked() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("pets");
    pets(&data, 2, 1);
    std::fs::write(data.join("train/cat/broken.png"), b"\x89PNG\r\n\x1a\n cut").unwrap();
    let run = dir.path().join("run");
    let data_arg = data.to_str().unwrap();
    let base = ["train", "--dataset", data_arg, "--model", "linear", "--batch-size", "1"];
    let out = xent(&[&base[..], &["--out", run.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("1 file cannot be decoded: train/cat/broken.png (PNG file"), "{err}");
    assert!(!run.exists(), "no run folder for a refused dataset");

    let out = xent(&[&base[..], &["--out", run.to_str().unwrap(), "--skip-bad"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("import left out 1 file that cannot be decoded"), "{text}");
    assert!(text.contains("train/cat/broken.png: PNG file without its header"), "{text}");
}

#[test]
fn train_holds_out_resizes_and_converts_on_request() {
    // One folder, no splits, two sizes, RGB.
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("shapes");
    for i in 0..8u8 {
        let side = if i % 2 == 0 { 8 } else { 12 };
        let path = data.join(if i < 4 { "round" } else { "square" }).join(format!("{i}.png"));
        rgb(&path, side, side, 10 * i);
    }
    let path = data.to_str().unwrap();
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let base =
            ["train", "--dataset", path, "--model", "linear", "--batch-size", "1", "--force"];
        xent(&[&base[..], &["--out", run.to_str().unwrap()], extra].concat())
    };

    // Each missing option is asked for in turn.
    let err = stderr(&train(&[]));
    assert!(err.contains("--val-fraction F"), "{err}");
    let err = stderr(&train(&["--val-fraction", "0.25"]));
    assert!(err.contains("images differ in size") && err.contains("--size HxW"), "{err}");

    let out = train(&["--val-fraction", "0.25", "--size", "6x6", "--channels", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("input=[1, 6, 6] classes=2 train=6 test=2"), "{text}");
    assert!(
        text.contains("RGB -> grey: 8") && text.contains("resized to 6x6 (bilinear): 8"),
        "{text}"
    );

    // The model file records the import, so eval reads the same held-out
    // images without the options being given again.
    let out = xent(&["eval", "--model", run.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["samples"], 2, "{report}");

    // A held-out fraction of a folder with its own test/ is refused, not ignored.
    let pets_dir = dir.path().join("pets");
    pets(&pets_dir, 2, 1);
    let pets_run = dir.path().join("pets-run");
    let args = ["train", "--dataset", pets_dir.to_str().unwrap(), "--val-fraction", "0.25"];
    let out = xent(&[&args[..], &["--out", pets_run.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let want = format!("has its own test split, {}", pets_dir.join("test").display());
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    assert!(!pets_run.exists(), "nothing is written for a refused option");

    // Option values xent cannot use: exit 2.
    let huge = ["--size", "100000x100000"];
    for bad in [&["--channels", "2"][..], &["--size", "0x3"], &["--val-fraction", "1.5"], &huge] {
        let out = train(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
}

#[test]
fn folder_options_are_refused_for_other_formats() {
    let dir = TempDir::new().unwrap();
    let run = dir.path().join("run");
    for extra in [&["--size", "8x8"][..], &["--channels", "3"], &["--skip-bad"]] {
        let base = ["train", "--dataset", "digits", "--out", run.to_str().unwrap()];
        let out = xent(&[&base[..], extra].concat());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(extra[0]) && err.contains("image folders only"), "{err}");
        assert!(!run.exists(), "nothing is written for a refused option");
    }
}

/// A labelled pixel CSV of `rows` 4×4 images in 3 classes, row `i` of class
/// `i % 3` with its pixels of index `≡ i (mod 3)` lit.
fn pixel_csv(path: &Path, rows: usize) {
    let header: Vec<String> = (0..16).map(|p| format!("pixel{p}")).collect();
    let mut text = format!("label,{}\n", header.join(","));
    for i in 0..rows {
        let lit = |p: usize| if p % 3 == i % 3 { 200 + i % 50 } else { i % 7 };
        let pixels: Vec<String> = (0..16).map(|p| lit(p).to_string()).collect();
        text += &format!("{},{}\n", i % 3, pixels.join(","));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn eval_without_a_test_split_says_what_eval_reads() {
    let dir = TempDir::new().unwrap();
    let trained_on = dir.path().join("train.csv");
    pixel_csv(&trained_on, 60);
    let run = dir.path().join("run");
    let args = ["train", "--dataset", trained_on.to_str().unwrap(), "--val-fraction", "0.2"];
    let more = ["--schedule", "constant", "--epochs", "1", "--out", run.to_str().unwrap()];
    let out = xent(&[&args[..], &more].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let model = run.to_str().unwrap();

    // Another CSV file without a test.csv: no --val-fraction advice, which
    // eval would refuse as an unexpected argument.
    let other = dir.path().join("other").join("new.csv");
    std::fs::create_dir(other.parent().unwrap()).unwrap();
    pixel_csv(&other, 30);
    let out = xent(&["eval", "--model", model, "--dataset", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(!err.contains("--val-fraction"), "{err}");
    assert!(err.contains("new.csv has no test split to evaluate on"), "{err}");
    assert!(err.contains("eval reads a test.csv with a label column beside it"), "{err}");
    assert!(err.contains("leave out --dataset"), "{err}");

    // Following it works.
    pixel_csv(&other.with_file_name("test.csv"), 12);
    let out = xent(&["eval", "--model", model, "--dataset", other.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["samples"], 12);

    // An image folder without test/: the same.
    let pets_dir = dir.path().join("pets");
    pets(&pets_dir, 4, 1);
    let run = dir.path().join("pets-run");
    let args = ["train", "--dataset", pets_dir.to_str().unwrap(), "--schedule", "constant"];
    let out = xent(&[&args[..], &["--epochs", "1", "--out", run.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_dir_all(pets_dir.join("test")).unwrap();
    let out = xent(&["eval", "--model", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(!err.contains("--val-fraction"), "{err}");
    assert!(
        err.contains("eval reads a test/ or val/ folder with one sub-folder per class"),
        "{err}"
    );
}

#[test]
fn inspect_audits_a_csv_file_without_a_test_split() {
    let dir = TempDir::new().unwrap();
    let csv = dir.path().join("rows.csv");
    pixel_csv(&csv, 30);
    let path = csv.to_str().unwrap();

    // What can be audited is, with a warning instead of a refusal.
    let out = xent(&["data", "inspect", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in ["(pixel CSV)", "classes   3: 0, 1, 2", "images    all 30", "sizes     4x4: 30"] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    let err = stderr(&out);
    assert!(err.contains("warning: no test split: training needs --val-fraction F"), "{err}");
    let out = xent(&["data", "inspect", path, "--json"]);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["splits"].as_array().unwrap().len(), 1);
    assert_eq!(json["splits"][0]["images"], 30);

    // With a test.csv beside it, both splits; folder options stay refused.
    pixel_csv(&csv.with_file_name("test.csv"), 6);
    let out = xent(&["data", "inspect", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("images    train 30 | test 6"), "{}", stdout(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let out = xent(&["data", "inspect", path, "--size", "8x8"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // The help lists every kind of dataset inspect takes.
    let help = stdout(&xent(&["data", "inspect", "--help"]));
    for kind in ["digits", "mnist", "cifar10", "cifar100", "folder of images", "IDX", ".csv"] {
        assert!(help.contains(kind), "{kind} not in\n{help}");
    }
}

#[test]
fn train_lists_the_first_skipped_entries_and_says_where_all_are() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("pets");
    pets(&data, 3, 1);
    for i in 0..7 {
        std::fs::write(data.join(format!("train/cat/notes{i}.txt")), "not an image").unwrap();
    }
    let run = dir.path().join("run");
    let args = ["train", "--dataset", data.to_str().unwrap(), "--epochs", "1", "--out"];
    let out = xent(&[&args[..], &[run.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));

    // Eight skipped: a count, five with their reasons, then the rest counted.
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("import skipped 8 entries")).expect(&text);
    assert!(lines[at + 1..=at + 5].iter().all(|l| l.contains(": ")), "{text}");
    let more = "         ... and 3 more (`xent data inspect --json` lists them all)";
    assert_eq!(lines[at + 6], more, "{text}");

    // Which it does.
    let out = xent(&["data", "inspect", data.to_str().unwrap(), "--json"]);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["skipped"].as_array().unwrap().len(), 8, "{json}");
}

/// `train/` and `test/` with `train` and `test` 8×8 images of each of the
/// classes cat, dog and ship; image `i` of class `k` has base `40k + 2i`.
fn cat_dog_ship(root: &Path, train: usize, test: usize) {
    for (k, class) in ["cat", "dog", "ship"].iter().enumerate() {
        for (split, n) in [("train", train), ("test", test)] {
            for i in 0..n {
                let path = root.join(format!("{split}/{class}/{i:03}.png"));
                rgb(&path, 8, 8, (40 * k + 2 * i) as u8);
            }
        }
    }
}

/// Copies the class folders `classes` of `from/split` to `to/split`, each
/// under the name it is paired with.
fn copy_classes(from: &Path, to: &Path, split: &str, classes: &[(&str, &str)]) {
    for (class, renamed) in classes {
        let target = to.join(split).join(renamed);
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(from.join(split).join(class)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
        }
    }
}

fn confusion(report: &Value) -> Vec<Vec<u64>> {
    serde_json::from_value(report["confusion_matrix"].clone()).unwrap()
}

#[test]
fn eval_matches_a_folders_classes_to_the_model_by_name() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("three");
    cat_dog_ship(&data, 10, 3);
    let run = dir.path().join("run");
    let args = ["train", "--dataset", data.to_str().unwrap(), "--model", "linear", "--epochs"];
    let out = xent(&[&args[..], &["1", "--out", run.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let model = run.to_str().unwrap();
    let out = xent(&["eval", "--model", model, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = confusion(&serde_json::from_str(&stdout(&out)).unwrap());

    // A folder of only test/dog and test/ship: its first class is dog, yet
    // each image is scored as before, and the empty cat row is pointed out.
    let some = dir.path().join("some");
    copy_classes(&data, &some, "test", &[("dog", "dog"), ("ship", "ship")]);
    let out = xent(&["eval", "--model", model, "--dataset", some.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["samples"], 6);
    assert_eq!(confusion(&report), [vec![0, 0, 0], rows[1].clone(), rows[2].clone()]);
    let note = "note: the model's class cat has no test images in";
    assert!(stderr(&out).contains(note), "{}", stderr(&out));

    // A class the model does not know is refused, not scored as another.
    let renamed = dir.path().join("renamed");
    let pairs = [("cat", "cat"), ("dog", "dog"), ("ship", "aship")];
    for split in ["train", "test"] {
        copy_classes(&data, &renamed, split, &pairs);
    }
    let out = xent(&["eval", "--model", model, "--dataset", renamed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let want = "class aship (3 images) is not among the model's 3 classes (cat, dog, ship";
    assert!(err.contains(want) && err.lines().count() == 1, "{err}");

    // So is a folder of photos for a model of grey digits, saying why.
    let digits = dir.path().join("digits");
    let out =
        xent(&["train", "--model", "linear", "--epochs", "1", "--out", digits.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out =
        xent(&["eval", "--model", digits.to_str().unwrap(), "--dataset", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for want in
        ["classes cat, dog, ship (9 images)", "10 classes (0..9, from digits)", "RGB -> grey"]
    {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
}

#[test]
fn a_stray_csv_label_draws_a_warning_and_no_huge_confusion_matrix() {
    // 60 rows of digits 0..9, line 42 (row 40) with the label 60000.
    let dir = TempDir::new().unwrap();
    let csv = dir.path().join("stray.csv");
    let header: Vec<String> = (0..16).map(|p| format!("pixel{p}")).collect();
    let mut text = format!("label,{}\n", header.join(","));
    for i in 0..60 {
        let label = if i == 40 { 60_000 } else { i % 10 };
        let pixels: Vec<String> = (0..16).map(|p| ((p * 13 + i * 7) % 256).to_string()).collect();
        text += &format!("{label},{}\n", pixels.join(","));
    }
    std::fs::write(&csv, text).unwrap();
    let warning = "labels go up to 60000 but only 11 distinct values appear";

    // Training takes the 60,001 classes, warns, and keeps no 28 GB matrix.
    let run = dir.path().join("run");
    let args = ["train", "--dataset", csv.to_str().unwrap(), "--val-fraction", "0.2"];
    let more = ["--model", "linear", "--epochs", "1", "--out", run.to_str().unwrap()];
    let out = xent(&[&args[..], &more].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(warning) && err.contains("line 42 has label 60000"), "{err}");
    assert!(stdout(&out).contains("classes=60001"), "{}", stdout(&out));

    // eval says the matrix is not kept, in text and JSON.
    let out = xent(&["eval", "--model", run.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["confusion_matrix"], Value::Null);
    let out = xent(&["eval", "--model", run.to_str().unwrap()]);
    let want = "confusion matrix not kept: the model has 60001 classes, more than the 1000";
    assert!(stdout(&out).contains(want), "{}", stdout(&out));

    // inspect warns too, and counts the empty classes on one line.
    let out = xent(&["data", "inspect", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(warning), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.lines().count() < 40, "{text}");
    assert!(text.contains("... and 59,990 classes without images: 10, 11,"), "{text}");
}

#[test]
fn skip_bad_that_leaves_nothing_says_so_with_exit_1() {
    let dir = TempDir::new().unwrap();
    let run = dir.path().join("run");
    let train = |data: &Path| {
        let args = ["train", "--dataset", data.to_str().unwrap(), "--skip-bad", "--out"];
        xent(&[&args[..], &[run.to_str().unwrap()]].concat())
    };

    // Every test image is bad: the test/ folder is there, its images are not.
    let data = dir.path().join("pets");
    pets(&data, 2, 1);
    for class in ["cat", "dog"] {
        std::fs::write(data.join(format!("test/{class}/000.png")), b"not a png").unwrap();
    }
    let out = train(&data);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let want = "every test image was left out as bad: none of the 2 test images can be decoded";
    assert!(err.contains(want) && !err.contains("give a test/"), "{err}");
    assert!(!run.exists(), "no run folder for a refused dataset");

    // Every file is bad: nothing is left, and --skip-bad is no advice.
    let junk = dir.path().join("junk");
    for file in ["train/cat/0.png", "train/dog/0.png", "test/cat/0.png"] {
        write_junk(&junk.join(file));
    }
    for out in [train(&junk), xent(&["train", "--dataset", junk.to_str().unwrap()])] {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        let want = "no decodable images are left: none of the 3 files can be decoded: train/cat";
        assert!(err.contains(want) && !err.contains("pass --skip-bad"), "{err}");
    }
    assert!(!run.exists());
}

/// A file with an image's name that holds no image.
fn write_junk(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"not a png").unwrap();
}
