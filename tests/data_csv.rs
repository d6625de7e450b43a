//! Pixel CSV files written here: training with a seeded stratified hold-out
//! or a labelled test.csv beside the file, the errors naming line and
//! column, and `xent predict` on a file of pixels alone, whose probabilities
//! must equal those of the dataset batch path.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;
use xent::data::{self, Dataset, LoadOptions};
use xent::io::Model;
use xent::nn::Mode;
use xent::Tensor;

/// Row `i` of a 4×4 CSV: label `i % 3`, and pixels that make class `k`
/// bright in its own columns, so a linear model can learn it.
fn row_pixels(i: usize) -> Vec<u8> {
    let k = i % 3;
    (0..16)
        .map(|p| if p % 4 == k { 200 + (i % 50) as u8 } else { (i * 7 + p) as u8 % 40 })
        .collect()
}

/// A CSV of `rows` rows with the label in column `label_at` (0-based) or
/// none, and a header `pixel0..pixel15`.
fn csv_text(rows: std::ops::Range<usize>, label_at: Option<usize>) -> String {
    let mut header: Vec<String> = (0..16).map(|p| format!("pixel{p}")).collect();
    if let Some(at) = label_at {
        header.insert(at, "label".into());
    }
    let mut text = header.join(",") + "\n";
    for i in rows {
        let mut cells: Vec<String> = row_pixels(i).iter().map(u8::to_string).collect();
        if let Some(at) = label_at {
            cells.insert(at, (i % 3).to_string());
        }
        text += &(cells.join(",") + "\n");
    }
    text
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn load(path: &Path, val_fraction: Option<f64>, seed: u64) -> xent::Result<data::Split> {
    let options = LoadOptions { val_fraction, seed, ..Default::default() };
    data::load_from_with(&path.to_string_lossy(), Path::new("/unused"), &options).map(|(s, _)| s)
}

fn message(path: &Path) -> String {
    load(path, Some(0.2), 0).expect_err("invalid CSV").to_string()
}

#[test]
fn a_held_out_fraction_is_stratified_and_seeded() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "train.csv", &csv_text(0..30, Some(0)));

    let split = load(&path, Some(0.2), 3).expect("valid CSV");
    assert_eq!(split.train.sample_shape(), [1, 4, 4]);
    assert_eq!(split.train.classes(), ["0", "1", "2"]);
    assert_eq!(split.train.max_value(), 255);
    assert_eq!(split.test.class_counts(), vec![2, 2, 2]);
    assert_eq!(split.train.class_counts(), vec![8, 8, 8]);

    // Same seed, same split; the pixels travel with their labels.
    assert_eq!(load(&path, Some(0.2), 3).unwrap(), split);
    let i = (0..split.test.len()).find(|&i| split.test.label(i) == 1).unwrap();
    let row = (0..30).find(|&r| row_pixels(r) == split.test.image(i)).unwrap();
    assert_eq!(row % 3, 1);
    let differs = (4..12).any(|seed| load(&path, Some(0.2), seed).unwrap().test != split.test);
    assert!(differs, "the seed must change which rows are held out");
}

#[test]
fn a_labelled_test_csv_beside_it_is_the_test_split() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "train.csv", &csv_text(0..12, Some(0)));
    write(dir.path(), "test.csv", &csv_text(12..18, Some(16)));

    let split = load(&path, None, 0).expect("valid CSV pair");
    assert_eq!((split.train.len(), split.test.len()), (12, 6));
    assert_eq!(split.test.image(0), row_pixels(12));
    assert_eq!(split.test.labels(), &[0, 1, 2, 0, 1, 2]);

    // A test label beyond the training classes names its line and column.
    let bad = csv_text(12..18, Some(0)).replacen("\n2,", "\n7,", 1);
    write(dir.path(), "test.csv", &bad);
    let msg = load(&path, None, 0).unwrap_err().to_string();
    assert!(
        msg.contains("test.csv: line 4, column 1 (label): label 7 is outside the classes 0..=2"),
        "{msg}"
    );
}

#[test]
fn without_a_test_split_the_error_suggests_val_fraction() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "digits.csv", &csv_text(0..9, Some(0)));
    let msg = load(&path, None, 0).unwrap_err().to_string();
    assert!(msg.contains("has no test split: pass --val-fraction 0.1"), "{msg}");

    // A test.csv without labels cannot test.
    write(dir.path(), "test.csv", &csv_text(0..3, None));
    let msg = load(&path, None, 0).unwrap_err().to_string();
    assert!(msg.contains("test.csv has no label column"), "{msg}");
    assert!(msg.contains("--val-fraction"), "{msg}");

    // A file without labels is prediction input, not training data.
    let msg = load(&dir.path().join("test.csv"), Some(0.5), 0).unwrap_err().to_string();
    assert!(msg.contains("no label column") && msg.contains("xent predict"), "{msg}");
}

#[test]
fn bad_files_name_line_and_column() {
    let dir = TempDir::new().unwrap();
    let good = csv_text(0..6, Some(0));
    let lines: Vec<&str> = good.lines().collect();
    let with_line = |n: usize, text: &str| {
        let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        l[n] = text.to_string();
        write(dir.path(), "bad.csv", &(l.join("\n") + "\n"))
    };

    let msg = message(&with_line(3, "1,2,3"));
    assert!(
        msg.contains("bad.csv: line 4: expected 17 values, one per header column, found 3"),
        "{msg}"
    );
    let msg = message(&with_line(2, &format!("1,ink,{}", ["0"; 15].join(","))));
    assert!(
        msg.contains("line 3, column 2 (pixel0): expected a whole number 0..=255, found \"ink\""),
        "{msg}"
    );
    let msg = message(&with_line(5, &format!("{},300", &lines[5][..lines[5].rfind(',').unwrap()])));
    assert!(msg.contains("line 6, column 17 (pixel15): value 300 is outside 0..=255"), "{msg}");
    let msg = message(&write(dir.path(), "bad.csv", ""));
    assert!(msg.contains("bad.csv: file is empty"), "{msg}");
    let msg = message(&write(dir.path(), "bad.csv", "label\n1\n2\n"));
    assert!(msg.contains("line 1: the header has no pixel columns"), "{msg}");
    let msg = message(&write(dir.path(), "bad.csv", "label,a,b,c,d,e\n1,2,3,4,5,6\n"));
    assert!(msg.contains("5 pixel columns do not make a square image"), "{msg}");
}

fn xent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(args)
        .env("XENT_DATA", "/nonexistent-xent-data")
        .output()
        .expect("the xent binary runs")
}

/// Class probabilities of `rows` through the dataset batch path.
fn dataset_probs(model: &mut Model, rows: std::ops::Range<usize>) -> Vec<Vec<f32>> {
    let pixels: Vec<u8> = rows.clone().flat_map(row_pixels).collect();
    let n = rows.len();
    let classes = model.info.classes.clone();
    let ds = Dataset::new("rows", pixels, vec![0; n], [1, 4, 4], classes, 255).unwrap();
    let (mut x, mut targets) = (Tensor::default(), Vec::new());
    let indices: Vec<usize> = (0..n).collect();
    data::fill_batch(&ds, &indices, &model.info.normalize, &mut x, &mut targets).unwrap();
    let logits = model.net.forward(&x, Mode::Eval).unwrap();
    let probs = xent::loss::softmax(logits, 1).unwrap();
    probs.data().chunks(probs.row_width()).map(<[f32]>::to_vec).collect()
}

#[test]
fn predict_writes_one_prediction_per_row_as_the_dataset_path_gives() {
    let dir = TempDir::new().unwrap();
    let train = write(dir.path(), "train.csv", &csv_text(0..60, Some(0)));
    let run = dir.path().join("run");
    let (train, run_s) = (train.to_str().unwrap(), run.to_str().unwrap());
    let out = xent(
        &["train", "--dataset", train, "--val-fraction", "0.2", "--model", "linear"]
            .into_iter()
            .chain(["--epochs", "3", "--schedule", "constant", "--quiet", "--out", run_s])
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Text: one line per row, numbered from 1.
    let input = write(dir.path(), "input.csv", &csv_text(100..105, None));
    let input = input.to_str().unwrap();
    let out = xent(&["predict", "--model", run_s, "--top", "1", input]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(lines[0].starts_with(&format!("{input} row 1: ")), "{stdout}");

    // JSON: row, line, class and probability, equal to the dataset path's.
    let out = xent(&["predict", "--model", run_s, "--json", input]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut model = Model::load(&run).unwrap();
    let want = dataset_probs(&mut model, 100..105);
    assert_eq!(rows.len(), 5);
    for (i, (row, want)) in rows.iter().zip(&want).enumerate() {
        assert_eq!(row["row"], i + 1);
        assert_eq!(row["line"], i + 2);
        let probs: Vec<f32> =
            row["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap() as f32).collect();
        assert_eq!(&probs, want, "row {}", i + 1);
        let class = row["class"].as_u64().unwrap() as usize;
        assert_eq!(row["prob"].as_f64().unwrap() as f32, want[class]);
        assert!(want.iter().all(|&p| p <= want[class]));
    }

    // A file of another image size is refused, naming both shapes.
    let wide = write(dir.path(), "wide.csv", "pixel0,pixel1,pixel2,pixel3\n1,2,3,4\n");
    let out = xent(&["predict", "--model", run_s, wide.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("wide.csv: rows hold 2×2 greyscale images"), "{stderr}");
    assert!(stderr.contains("the model takes [1, 4, 4]"), "{stderr}");
}
