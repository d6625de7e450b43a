//! The run folder: `model.safetensors`, `config.json` and `metrics.jsonl`.
//! A folder that already holds a run is never reused without `force`, and
//! with it the earlier run is replaced only once the new one has saved an
//! epoch.

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

/// The hidden sub-folder a run replacing another trains in until its first
/// epoch is saved.
const STAGING: &str = ".xent-new-run";

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

    /// Creates the folder and returns the writer of the run's files; checks
    /// again that no run appeared since [`RunDir::new`].
    ///
    /// When the folder holds a run (and `force` was given), that run stays
    /// untouched until the new one has saved its first epoch: the new files
    /// go to a hidden sub-folder, `.xent-new-run/`, and replace the old ones
    /// only then (see [`RunWriter::save_epoch`]). A new run that fails
    /// before, or is interrupted, leaves the earlier run as it was.
    ///
    /// # Errors
    ///
    /// [`Error::RunExists`] as in [`RunDir::new`]; [`Error::Io`] when a
    /// folder cannot be created or a stale hidden one removed.
    pub fn create(&self) -> Result<RunWriter> {
        let replacing = RunDir::holds_run(&self.path);
        if replacing && !self.force {
            return Err(Error::RunExists { path: self.path.clone() });
        }
        std::fs::create_dir_all(&self.path).map_err(|e| Error::io("creating", &self.path, e))?;

        // A staging folder left by an interrupted run holds nothing of value.
        let staging = self.path.join(STAGING);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| Error::io("removing", &staging, e))?;
        }
        if !replacing {
            return Ok(RunWriter { dir: self.path.clone(), target: None });
        }
        std::fs::create_dir(&staging).map_err(|e| Error::io("creating", &staging, e))?;
        Ok(RunWriter { dir: staging, target: Some(self.path.clone()) })
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
}

/// Writes the files of one run, from [`RunDir::create`]. A run that replaces
/// another writes into a staging folder until its first epoch is saved; if
/// the writer is dropped before that, the staging folder is removed and the
/// earlier run is left as it was.
#[derive(Debug)]
pub struct RunWriter {
    /// Where the files are written now.
    dir: PathBuf,
    /// The run folder, while `dir` is its staging folder.
    target: Option<PathBuf>,
}

impl RunWriter {
    /// Writes `config.json`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be written.
    pub fn write_config(&self, config: &impl Serialize) -> Result<()> {
        let path = self.dir.join("config.json");
        let text = serde_json::to_string_pretty(config).expect("config is plain data");
        std::fs::write(&path, text + "\n").map_err(|e| Error::io("writing", path, e))
    }

    /// Records a finished epoch: appends its line to `metrics.jsonl` and
    /// saves the model, replacing the previous epoch's atomically. After the
    /// first epoch of a run that replaces another, moves the new files over
    /// the earlier run's.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a file cannot be written or moved; as
    /// [`Model::save`].
    pub fn save_epoch(&mut self, metrics: &EpochMetrics, model: &Model) -> Result<()> {
        self.append_metrics(metrics)?;
        model.save(&self.dir.join("model.safetensors"))?;
        if let Some(target) = self.target.take() {
            self.commit(target)?;
        }
        Ok(())
    }

    /// Appends one line to `metrics.jsonl`.
    fn append_metrics(&self, metrics: &EpochMetrics) -> Result<()> {
        let path = self.dir.join("metrics.jsonl");
        let line = serde_json::to_string(metrics).expect("metrics are plain data");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("writing", &path, e))?;
        writeln!(file, "{line}").map_err(|e| Error::io("writing", &path, e))
    }

    /// Moves the staged files into `target`, each with one rename (the model
    /// last, so the folder's model is the earlier run's until the end), then
    /// writes there directly.
    fn commit(&mut self, target: PathBuf) -> Result<()> {
        for name in RUN_FILES.iter().rev() {
            let (from, to) = (self.dir.join(name), target.join(name));
            std::fs::rename(&from, &to).map_err(|e| Error::io("replacing", &to, e))?;
        }
        let staging = std::mem::replace(&mut self.dir, target);
        std::fs::remove_dir(&staging).map_err(|e| Error::io("removing", &staging, e))
    }
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        // A run that replaced nothing yet leaves no trace; the error of the
        // run itself is what the user needs to see, so a failure here is
        // not reported.
        if self.target.is_some() {
            std::fs::remove_dir_all(&self.dir).ok();
        }
    }
}
