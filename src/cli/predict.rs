//! `xent predict`: class probabilities for PNG or JPEG files, and for the
//! rows of pixel CSV files.

use std::path::{Path, PathBuf};

use clap::Args;
use xent::data::{self, Dataset, PixelCsv};
use xent::io::Model;
use xent::nn::Mode;
use xent::{Error, Result, Tensor};

/// Options of `xent predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Model file written by `xent train`, or its run folder.
    #[arg(long)]
    model: PathBuf,
    /// PNG or JPEG files, converted to the model's channels and size (like the training data,
    /// a digit is light ink on a dark background; alpha is ignored), or pixel .csv files: one
    /// image per row, 0-255, one prediction per row (a label column is ignored).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many classes to list per image.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// Print one JSON object per image (or CSV row) instead of text.
    #[arg(long)]
    json: bool,
}

/// Rows of a CSV file run through the model at a time.
const CSV_BATCH: usize = 256;

/// Runs `xent predict`.
pub fn run(args: &PredictArgs) -> Result<()> {
    if args.top == 0 {
        return Err(Error::arg("--top must be at least 1"));
    }
    let mut model = Model::load(&args.model)?;

    // In the order given: runs of image files together, each CSV file alone.
    let mut images: Vec<PathBuf> = Vec::new();
    for path in &args.images {
        if data::is_csv_path(&path.to_string_lossy()) {
            predict_images(&mut model, &images, args)?;
            images.clear();
            predict_csv(&mut model, path, args)?;
        } else {
            images.push(path.clone());
        }
    }
    predict_images(&mut model, &images, args)
}

/// Prints the predictions for image files.
fn predict_images(model: &mut Model, paths: &[PathBuf], args: &PredictArgs) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let probs = xent::io::predict_files(model, paths)?;
    for (path, probs) in paths.iter().zip(&probs) {
        let image = path.display().to_string();
        let keys = serde_json::json!({ "image": image });
        print_prediction(&model.info.classes, probs, args, keys, &image);
    }
    Ok(())
}

/// Prints one prediction per row of a pixel CSV file. The rows go through
/// the same batch path as a dataset: `u8` pixels with full intensity 255,
/// normalised with the model's statistics.
fn predict_csv(model: &mut Model, path: &Path, args: &PredictArgs) -> Result<()> {
    let csv = data::read_pixel_csv(path)?;
    let classes = model.info.classes.clone();
    let shape = [1, csv.side, csv.side];
    if model.info.input_shape != shape {
        return Err(Error::invalid(
            path,
            format!(
                "rows hold {s}×{s} greyscale images, shape {shape:?}, but the model takes {:?}",
                model.info.input_shape,
                s = csv.side
            ),
        ));
    }

    // Batch after batch; each row is printed with its number and line.
    let file = path.display().to_string();
    for start in (0..csv.len()).step_by(CSV_BATCH) {
        let rows: Vec<usize> = (start..(start + CSV_BATCH).min(csv.len())).collect();
        let probs = csv_probs(model, &csv, &rows, &classes)?;
        for (&row, probs) in rows.iter().zip(&probs) {
            let line = csv.lines[row];
            let keys = serde_json::json!({ "file": file, "row": row + 1, "line": line });
            let label = format!("{file} row {}", row + 1);
            print_prediction(&classes, probs, args, keys, &label);
        }
    }
    Ok(())
}

/// Class probabilities of the CSV rows `rows`.
fn csv_probs(
    model: &mut Model,
    csv: &PixelCsv,
    rows: &[usize],
    classes: &[String],
) -> Result<Vec<Vec<f32>>> {
    let pixels: Vec<u8> = rows.iter().flat_map(|&r| csv.row(r).iter().copied()).collect();
    let shape = [1, csv.side, csv.side];
    let batch = Dataset::new("csv", pixels, vec![0; rows.len()], shape, classes.to_vec(), 255)?;
    let indices: Vec<usize> = (0..rows.len()).collect();
    let (mut x, mut targets) = (Tensor::default(), Vec::new());
    data::fill_batch(&batch, &indices, &model.info.normalize, &mut x, &mut targets)?;
    let logits = model.net.forward(&x, Mode::Eval)?;
    let probs = xent::loss::softmax(logits, 1)?;
    Ok(probs.data().chunks(probs.row_width()).map(<[f32]>::to_vec).collect())
}

/// Prints one prediction: text `LABEL: class prob | ...`, or a JSON object
/// that also holds `keys` (where the input came from).
fn print_prediction(
    classes: &[String],
    probs: &[f32],
    args: &PredictArgs,
    keys: serde_json::Value,
    label: &str,
) {
    let mut ranked: Vec<usize> = (0..probs.len()).collect();
    // Highest first; the sort is stable, so ties keep class order.
    ranked.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    ranked.truncate(args.top);
    if args.json {
        let top: Vec<_> = ranked
            .iter()
            .map(|&c| serde_json::json!({"class": c, "name": classes[c], "prob": probs[c]}))
            .collect();
        let mut line = serde_json::json!({
            "class": ranked[0],
            "name": classes[ranked[0]],
            "prob": probs[ranked[0]],
            "top": top,
            "probs": probs,
        });
        if let (Some(line), serde_json::Value::Object(keys)) = (line.as_object_mut(), keys) {
            line.extend(keys);
        }
        println!("{line}");
    } else {
        let listed: Vec<String> =
            ranked.iter().map(|&c| format!("{} {:.4}", classes[c], probs[c])).collect();
        println!("{label}: {}", listed.join(" | "));
    }
}
