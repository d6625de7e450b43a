//! `xent predict`: class probabilities for PNG or JPEG files.

use std::path::PathBuf;

use clap::Args;
use xent::io::Model;
use xent::{Error, Result};

/// Options of `xent predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Model file written by `xent train`, or its run folder.
    #[arg(long)]
    model: PathBuf,
    /// PNG or JPEG files; converted to the model's channels and size. Like the
    /// training data, a digit is light ink on a dark background; alpha is ignored.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many classes to list per image.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// Print one JSON object per image instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `xent predict`.
pub fn run(args: &PredictArgs) -> Result<()> {
    if args.top == 0 {
        return Err(Error::arg("--top must be at least 1"));
    }
    let mut model = Model::load(&args.model)?;
    let probs = xent::io::predict_files(&mut model, &args.images)?;
    let classes = &model.info.classes;

    for (path, probs) in args.images.iter().zip(&probs) {
        let mut ranked: Vec<usize> = (0..probs.len()).collect();
        // Highest first; the sort is stable, so ties keep class order.
        ranked.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        ranked.truncate(args.top);
        if args.json {
            let top: Vec<_> = ranked
                .iter()
                .map(|&c| serde_json::json!({"class": c, "name": classes[c], "prob": probs[c]}))
                .collect();
            let line = serde_json::json!({
                "image": path.display().to_string(),
                "class": ranked[0],
                "name": classes[ranked[0]],
                "top": top,
                "probs": probs,
            });
            println!("{line}");
        } else {
            let listed: Vec<String> =
                ranked.iter().map(|&c| format!("{} {:.4}", classes[c], probs[c])).collect();
            println!("{}: {}", path.display(), listed.join(" | "));
        }
    }
    Ok(())
}
