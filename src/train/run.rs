//! The run folder: `model.safetensors`, `config.json` and `metrics.jsonl`.
//! A folder that already holds a run is never reused without `force`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::io::Model;
use crate::{Error, Result};

/// The files a run writes; the first two are its results.
const RUN_FILES: [&str; 3] = ["model.safetensors", "metrics.jsonl", "config.json"];

/// How many of [`RUN_FILES`] are results: a folder holding only a
/// `config.json` (a run that failed before its first epoch) holds no run.
const RESULT_FILES: usize = 2;

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Fraction of training samples classified correctly during the epoch.
    pub train_accuracy: f64,
    /// Mean loss on the test split.
    pub test_loss: f64,
    /// Top-1 accuracy on the test split, 0 to 1.
    pub test_accuracy: f64,
    /// Top-5 accuracy on the test split, 0 to 1.
    pub test_top5_accuracy: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Seconds of training in this epoch (evaluation excluded).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
    /// Seconds spent evaluating.
    pub eval_seconds: f64,
}

/// A run folder: checked when it is named, created only when the run has
/// been set up, so a run refused for a bad option leaves nothing behind.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
    force: bool,
}

impl RunDir {
    /// Names `path` as the folder of a new run, writing nothing yet.
    ///
    /// # Errors
    ///
    /// [`Error::RunExists`] when it already holds a run and `force` is false.
    pub fn new(path: &Path, force: bool) -> Result<RunDir> {
        if RunDir::holds_run(path) && !force {
            return Err(Error::RunExists { path: path.into() });
        }
        Ok(RunDir { path: path.into(), force })
    }

    /// Creates the folder, removing an earlier run's files when `force` was
    /// given; checks again that no run appeared since [`RunDir::new`].
    ///
    /// # Errors
    ///
    /// [`Error::RunExists`] as in [`RunDir::new`]; [`Error::Io`] when the
    /// folder cannot be created or cleared.
    pub fn create(&self) -> Result<()> {
        if RunDir::holds_run(&self.path) && !self.force {
            return Err(Error::RunExists { path: self.path.clone() });
        }
        let existing: Vec<PathBuf> =
            RUN_FILES.iter().map(|f| self.path.join(f)).filter(|p| p.exists()).collect();
        for file in existing {
            std::fs::remove_file(&file).map_err(|e| Error::io("removing", file, e))?;
        }
        std::fs::create_dir_all(&self.path).map_err(|e| Error::io("creating", &self.path, e))
    }

    /// Whether `path` holds the results of a run: a model or metrics.
    pub fn holds_run(path: &Path) -> bool {
        RUN_FILES[..RESULT_FILES].iter().any(|f| path.join(f).exists())
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of the model file.
    pub fn model_path(&self) -> PathBuf {
        self.path.join("model.safetensors")
    }

    /// Writes `config.json`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be written.
    pub fn write_config(&self, config: &impl Serialize) -> Result<()> {
        let path = self.path.join("config.json");
        let text = serde_json::to_string_pretty(config).expect("config is plain data");
        std::fs::write(&path, text + "\n").map_err(|e| Error::io("writing", path, e))
    }

    /// Appends one line to `metrics.jsonl`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be written.
    pub fn append_metrics(&self, metrics: &EpochMetrics) -> Result<()> {
        let path = self.path.join("metrics.jsonl");
        let line = serde_json::to_string(metrics).expect("metrics are plain data");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("writing", &path, e))?;
        writeln!(file, "{line}").map_err(|e| Error::io("writing", &path, e))
    }

    /// Saves the model, replacing the previous epoch's atomically.
    ///
    /// # Errors
    ///
    /// As [`Model::save`].
    pub fn save_model(&self, model: &Model) -> Result<()> {
        model.save(&self.model_path())
    }
}
