//! `xent eval`: a model file against a dataset's test split.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use xent::data::{load_test_with, reads_as_image_folder, ImportReport, LoadOptions};
use xent::io::{Model, ModelInfo};
use xent::train::{class_map, evaluate, MAX_CONFUSION_CLASSES};
use xent::{Error, Result};

use super::percent;

/// Options of `xent eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model file written by `xent train` (model.safetensors), or its run folder.
    #[arg(long)]
    model: PathBuf,
    /// Dataset whose test split to use [default: the one the model was trained on]; its
    /// classes are matched to the model's by name, and one the model lacks is refused.
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
    let (test, report) = load_test_with(&name, &import_options(&name, &model.info))
        .map_err(|e| for_eval(e, &name, &model.info))?;
    class_map(&test, &model.info).map_err(|e| with_conversions(e, &report, &model.info))?;
    let eval = evaluate(&mut model, &test)?;
    let tally = &eval.tally;
    note_absent(&eval.absent, &name);

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
    match tally.confusion_rows() {
        Some(rows) => print_confusion(&model.info.classes, &rows),
        None => {
            println!(
                "confusion matrix not kept: the model has {} classes, more than the {} it is \
                 kept for",
                model.info.classes.len(),
                MAX_CONFUSION_CLASSES
            );
            Ok(())
        }
    }
}

/// Classes named in the note on classes without test images.
const ABSENT_SHOWN: usize = 20;

/// Says which of the model's classes the dataset has no test images of: their
/// rows of the confusion matrix are empty, which is no failure of the model.
fn note_absent(absent: &[String], name: &str) {
    let (n, mut list) = (absent.len(), absent[..absent.len().min(ABSENT_SHOWN)].join(", "));
    if n > ABSENT_SHOWN {
        list += &format!(" and {} more", n - ABSENT_SHOWN);
    }
    match n {
        0 => {}
        1 => eprintln!("note: the model's class {list} has no test images in {name}"),
        _ => eprintln!("note: the model's classes {list} have no test images in {name}"),
    }
}

/// How to read `name`: as training read it when it is the training dataset
/// (the same held-out split, labels and bad-file policy); an image folder is
/// converted to the model's channels and size, as `predict` does, which for
/// the training folder is what training did.
fn import_options(name: &str, info: &ModelInfo) -> LoadOptions {
    let mut options =
        if same_dataset(name, info) { info.import.clone() } else { LoadOptions::default() };
    if let (&[channels, height, width], true) = (&info.input_shape[..], reads_as_image_folder(name))
    {
        options.channels = Some(channels);
        options.size = Some((height, width));
    }
    options
}

/// Adds to a refusal of the dataset's classes how its images were changed to
/// fit the model, when they were: a dataset of other classes often has
/// other images too (RGB photos for a model of grey digits).
fn with_conversions(err: Error, report: &ImportReport, info: &ModelInfo) -> Error {
    let Error::InvalidArgument(detail) = err else { return err };
    if report.conversions.is_empty() {
        return Error::InvalidArgument(detail);
    }
    let applied: Vec<&str> = report.conversions.keys().map(String::as_str).collect();
    Error::arg(format!(
        "{detail}; its images were also converted to the model's input {:?}: {}",
        info.input_shape,
        applied.join(", ")
    ))
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
