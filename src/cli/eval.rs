//! `xent eval`: a model file against a dataset's test split.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use xent::data::{is_image_folder, LoadOptions};
use xent::io::{Model, ModelInfo};
use xent::train::evaluate;
use xent::{Error, Result};

use super::percent;

/// Options of `xent eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model file written by `xent train` (model.safetensors), or its run folder.
    #[arg(long)]
    model: PathBuf,
    /// Dataset whose test split to use [default: the one the model was trained on].
    #[arg(long)]
    dataset: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `xent eval`.
pub fn run(args: &EvalArgs) -> Result<()> {
    let mut model = Model::load(&args.model)?;
    let name = args.dataset.clone().unwrap_or_else(|| model.info.dataset.clone());
    let (split, _) = xent::data::load_with(&name, &import_options(&name, &model.info))
        .map_err(|e| for_eval(e, &name, &model.info))?;
    let eval = evaluate(&mut model, &split.test)?;
    let tally = &eval.tally;

    if args.json {
        let report = serde_json::json!({
            "dataset": name,
            "samples": tally.samples,
            "loss": tally.mean_loss(),
            "accuracy": tally.accuracy(),
            "top5_accuracy": tally.top5_accuracy(),
            "classes": model.info.classes,
            "confusion_matrix": tally.confusion_rows(),
            "seconds": eval.seconds,
        });
        println!("{report}");
        return Ok(());
    }

    println!("model    {} ({})", args.model.display(), model.info.spec);
    println!("dataset  {name} test split, {} images", tally.samples);
    println!(
        "result   loss {:.4} | top-1 {} | top-5 {} | {:.2} s",
        tally.mean_loss(),
        percent(tally.accuracy()),
        percent(tally.top5_accuracy()),
        eval.seconds
    );
    print_confusion(&model.info.classes, &tally.confusion_rows())
}

/// How to read `name`: as training read it when it is the training dataset
/// (the same held-out split, labels, channels and size); another image
/// folder is converted to the model's channels and size, as `predict` does.
fn import_options(name: &str, info: &ModelInfo) -> LoadOptions {
    if same_dataset(name, info) {
        return info.import.clone();
    }
    match info.input_shape[..] {
        [channels, height, width] if is_image_folder(Path::new(name)) => LoadOptions {
            channels: Some(channels),
            size: Some((height, width)),
            ..LoadOptions::default()
        },
        _ => LoadOptions::default(),
    }
}

/// Says what eval reads when a dataset has no test split: the loaders'
/// advice, `--val-fraction`, is an option of `train` only.
fn for_eval(err: Error, name: &str, info: &ModelInfo) -> Error {
    let Error::NoTestSplit { path, expected, .. } = err else { return err };
    let mut detail =
        format!("{} has no test split to evaluate on: eval reads {expected}", path.display());
    if !same_dataset(name, info) {
        detail += &format!(
            "; put one there, or leave out --dataset to evaluate on the test split of {}, the \
             model's dataset",
            info.dataset
        );
    }
    Error::NoTestSplit { path, expected, detail }
}

/// Whether `name` is the dataset the model was trained on.
fn same_dataset(name: &str, info: &ModelInfo) -> bool {
    let canonical = |p: &str| std::fs::canonicalize(p).ok();
    name == info.dataset
        || canonical(name).is_some_and(|path| Some(path) == canonical(&info.dataset))
}

/// The confusion matrix with true labels as rows, predictions as columns.
fn print_confusion(classes: &[String], rows: &[Vec<u64>]) -> Result<()> {
    let width = rows.iter().flatten().map(|v| v.to_string().len()).max().unwrap_or(1).max(3);
    let label_width = classes.iter().map(|c| c.chars().count() + 3).max().unwrap_or(1).max(4);
    let mut out = String::from("confusion matrix (row = true label, column = predicted)\n");
    out += &format!("{:>label_width$} ", "");
    for i in 0..classes.len() {
        out += &format!(" {i:>width$}");
    }
    out.push('\n');
    for (i, (name, row)) in classes.iter().zip(rows).enumerate() {
        // Name the class unless its name is its index.
        let label = if *name == i.to_string() { name.clone() } else { format!("{i}:{name}") };
        out += &format!("{label:>label_width$} ");
        for v in row {
            out += &format!(" {v:>width$}");
        }
        out.push('\n');
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .map_err(|e| Error::io("writing", "standard output", e))
}
