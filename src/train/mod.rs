//! The training loop, evaluation, metrics and the run folder.
//!
//! One step: take the normalised (and, if asked, augmented) batch that a
//! background thread built from `u8` pixels while the last step ran, forward
//! to the logits, fused softmax-cross-entropy gives the loss and `dlogits`, backward
//! through the layers, one optimiser update. Every epoch ends with an
//! evaluation on the test split, a line in `metrics.jsonl` and a saved model,
//! so a run that fails later keeps its last good epoch.

mod eval;
mod metrics;
mod run;

pub use eval::{class_map, evaluate, ClassMap, Evaluation};
pub use metrics::{in_top_k, Tally, MAX_CONFUSION_CLASSES};
pub use run::{EpochMetrics, RunDir, RunWriter};

use std::time::Instant;

use serde::Serialize;

use crate::data::{samples_per_epoch, Augment, BatchPlan, LoadOptions, Loader, Normalize, Split};
use crate::io::{Model, ModelInfo};
use crate::loss::{self, CrossEntropy};
use crate::nn::{Mode, ModelSpec};
use crate::optim::{OptimizerConfig, Schedule};
use crate::rng::Rng;
use crate::tensor::{argmax, Tensor};
use crate::{Error, Result};

/// Random-stream purpose for weight initialisation (see [`Rng::new`]).
const INIT_STREAM: u64 = 1;

/// The most worker threads a run may have. The cap is fixed rather than a
/// multiple of this machine's cores because a run's results depend on its
/// thread count: a run must be repeatable with the same `--threads` on any
/// machine. 1,024 is above the hardware threads of any one machine today,
/// while a typo such as 100000 would start that many threads and take
/// turns on the cores for as long as training lasts.
pub const MAX_THREADS: usize = 1024;

/// Everything that defines a training run; written to `config.json`.
#[derive(Clone, Debug, Serialize)]
pub struct TrainConfig {
    /// Dataset name or path.
    pub dataset: String,
    /// How the dataset is imported; recorded in the model file so `xent
    /// eval` reads the same test split.
    pub import: LoadOptions,
    /// Preset name or model spec.
    pub model: String,
    /// Passes over the training split.
    pub epochs: usize,
    /// Samples per step.
    pub batch_size: usize,
    /// Optimiser and its hyper-parameters.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule, in [`Schedule::parse`] syntax.
    pub schedule: String,
    /// Label smoothing of the cross-entropy, 0 to 1.
    pub label_smoothing: f32,
    /// Seed of initialisation and shuffling.
    pub seed: u64,
    /// Worker threads.
    pub threads: usize,
    /// Random transforms of the training images (never of the test images).
    pub augment: Augment,
    /// Normalisation statistics; `None` measures them on the training split.
    pub normalize: Option<Normalize>,
    /// Build each batch on a background thread while the previous one trains;
    /// the same batches either way.
    pub prefetch: bool,
}

impl TrainConfig {
    /// Checks the options that need no data: sizes, threads, the optimiser,
    /// label smoothing and given normalisation statistics. [`train`] calls it
    /// before anything is written.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the option and its value.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--threads", self.threads),
        ] {
            if value == 0 {
                return Err(Error::arg(format!("{name} must be at least 1, found 0")));
            }
        }
        if self.threads > MAX_THREADS {
            return Err(Error::arg(format!(
                "--threads must be at most {MAX_THREADS}, found {}; threads beyond the cores \
                 only take turns on them",
                self.threads
            )));
        }
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(Error::arg(format!(
                "--label-smoothing must be in [0, 1], found {}",
                self.label_smoothing
            )));
        }
        if let Some(norm) = &self.normalize {
            validate_normalize(norm)?;
        }
        self.optimizer.validate()
    }

    /// Optimiser steps per epoch on `train_len` training samples: batches of
    /// `batch_size`, the last one shorter, and without a last batch of one
    /// sample when the model has batch norm (see
    /// [`samples_per_epoch`](crate::data::samples_per_epoch)).
    ///
    /// # Errors
    ///
    /// [`Error::Spec`] when the model spec does not parse.
    pub fn steps_per_epoch(&self, train_len: usize) -> Result<usize> {
        let spec = ModelSpec::parse(&self.model)?;
        Ok(self.epoch_size(train_len, &spec).1)
    }

    /// Samples and steps per epoch on `train_len` samples with `spec`.
    fn epoch_size(&self, train_len: usize, spec: &ModelSpec) -> (usize, usize) {
        let samples = samples_per_epoch(train_len, self.batch_size, spec.has_batch_norm());
        (samples, samples.div_ceil(self.batch_size.max(1)))
    }
}

/// Given statistics: one mean and one positive std per channel, all finite.
fn validate_normalize(norm: &Normalize) -> Result<()> {
    let (mean, std) = (&norm.mean, &norm.std);
    if mean.is_empty() || mean.len() != std.len() {
        return Err(Error::arg(format!(
            "--mean and --std need one value per channel each, found {} and {}",
            mean.len(),
            std.len()
        )));
    }
    if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
        return Err(Error::arg(format!("--mean values must be finite, found {m}")));
    }
    if let Some(s) = std.iter().find(|&&s| !(s.is_finite() && s > 0.0)) {
        return Err(Error::arg(format!("--std values must be finite and above 0, found {s}")));
    }
    Ok(())
}

/// What a run reports before its first step.
#[derive(Clone, Debug)]
pub struct Header {
    /// The architecture, every size explicit.
    pub spec: String,
    /// Trainable values.
    pub params: usize,
    /// Training samples.
    pub train_len: usize,
    /// Test samples.
    pub test_len: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Shape of one sample.
    pub input_shape: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
}

/// Progress within an epoch, reported after every step.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based step within the epoch.
    pub step: usize,
    /// Steps in the epoch.
    pub steps: usize,
    /// This step's mean loss.
    pub loss: f32,
    /// This step's learning rate.
    pub lr: f64,
    /// Images trained on so far in the epoch.
    pub images: usize,
    /// Seconds since the epoch started.
    pub seconds: f64,
}

/// Receives progress; the library itself never prints.
pub trait Observer: Send {
    /// Before the first step.
    fn on_start(&mut self, _header: &Header) {}
    /// After every step.
    fn on_step(&mut self, _step: &StepReport) {}
    /// After every epoch's evaluation.
    fn on_epoch(&mut self, _metrics: &EpochMetrics) {}
}

/// An observer that ignores everything.
impl Observer for () {}

/// The outcome of [`train`].
#[derive(Debug)]
pub struct Trained {
    /// The model after the last epoch.
    pub model: Model,
    /// One entry per epoch.
    pub history: Vec<EpochMetrics>,
}

impl Trained {
    /// The epoch with the best test accuracy (the first of equals).
    pub fn best(&self) -> Option<&EpochMetrics> {
        self.history.iter().fold(None, |best: Option<&EpochMetrics>, m| match best {
            Some(b) if b.test_accuracy >= m.test_accuracy => Some(b),
            _ => Some(m),
        })
    }
}

/// Trains a model on `split.train`, evaluating on `split.test` after each
/// epoch. With a `run` folder, creates it once the model and options are
/// known to be good, writes `config.json`, then a metrics line and the model
/// after every epoch. A run folder that holds an earlier run keeps it until
/// this run's first epoch is saved (see [`RunDir::create`]).
///
/// # Errors
///
/// A training or test split without images ([`Error::InvalidData`], or
/// [`Error::InvalidArgument`] for a test split left empty by too small a
/// held-out fraction), bad options or spec ([`Error::InvalidArgument`],
/// [`Error::Spec`]), a loss that stops being finite ([`Error::Diverged`],
/// naming epoch and step; the model file keeps the last completed epoch),
/// and I/O errors of the run folder.
pub fn train(
    split: &Split,
    config: &TrainConfig,
    run: Option<&RunDir>,
    observer: &mut dyn Observer,
) -> Result<Trained> {
    config.validate()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .map_err(|e| Error::arg(format!("cannot start {} threads: {e}", config.threads)))?;
    pool.install(|| train_in_pool(split, config, run, observer))
}

fn train_in_pool(
    split: &Split,
    config: &TrainConfig,
    run: Option<&RunDir>,
    observer: &mut dyn Observer,
) -> Result<Trained> {
    let train_set = &split.train;
    if train_set.is_empty() {
        return Err(Error::invalid(&config.dataset, "the training split holds no images"));
    }
    if split.test.is_empty() {
        // A run scored on nothing would report 0% as if it were a result.
        // A held-out fraction too small is the option's fault, else the data's.
        if config.import.val_fraction.is_some() {
            return Err(Error::arg(format!(
                "dataset {}: the test split holds no images; give a larger --val-fraction (each \
                 class holds out its fraction, rounded)",
                config.dataset
            )));
        }
        return Err(Error::invalid(&config.dataset, "the test split holds no images"));
    }
    let shape = train_set.sample_shape().to_vec();
    let classes = train_set.classes().len();

    // Model, optimiser and schedule, all checked before anything is written.
    let spec = ModelSpec::parse(&config.model)?;
    let net = spec.build(&shape, classes, &mut Rng::new(config.seed, INIT_STREAM))?;
    let mut optimizer = config.optimizer.build()?;
    let (samples_per_epoch, steps_per_epoch) = config.epoch_size(train_set.len(), &spec);
    let total_steps = config.epochs * steps_per_epoch;
    let lr = config.optimizer.lr;
    let schedule = Schedule::parse(&config.schedule, lr, total_steps).map_err(|e| match e {
        // Say where the step count comes from when the run is too short for
        // the schedule: a small dataset with the default batch size has fewer
        // steps than the user may think.
        Error::InvalidArgument(why) if Schedule::too_short(&config.schedule, lr, total_steps) => {
            Error::arg(format!(
                "{why} (this run has {total_steps} step(s): {} epoch(s) of {steps_per_epoch} \
                 batch(es); more epochs, a smaller --batch-size or --schedule constant fit)",
                config.epochs
            ))
        }
        other => other,
    })?;
    let normalize = match &config.normalize {
        Some(given) if given.channels() != shape[0] => {
            return Err(Error::arg(format!(
                "--mean and --std give {} channel(s), dataset {} has {}",
                given.channels(),
                config.dataset,
                shape[0]
            )));
        }
        Some(given) => given.clone(),
        None => Normalize::measure(train_set),
    };
    let info = ModelInfo {
        spec: net.spec(),
        input_shape: shape.clone(),
        classes: train_set.classes().to_vec(),
        pixel_max: f32::from(train_set.max_value()),
        normalize: normalize.clone(),
        dataset: config.dataset.clone(),
        import: config.import.clone(),
        training: serde_json::Value::Null,
    };
    let mut model = Model { net, info };
    let mut writer = run.map(RunDir::create).transpose()?;
    if let Some(writer) = &writer {
        writer.write_config(config)?;
    }
    observer.on_start(&Header {
        spec: model.info.spec.clone(),
        params: model.net.param_count(),
        train_len: train_set.len(),
        test_len: split.test.len(),
        steps_per_epoch,
        input_shape: shape,
        classes,
    });

    // The loss as PyTorch's default cross_entropy, plus optional smoothing.
    let ce = CrossEntropy { label_smoothing: config.label_smoothing, ..CrossEntropy::default() };

    // The run's batches, each built on a background thread while the one
    // before it trains (or inline, when prefetching is off): the same bits
    // either way, since a batch depends only on the seed, epoch and indices.
    let plan = BatchPlan {
        dataset: train_set,
        normalize: &normalize,
        augment: config.augment,
        seed: config.seed,
        batch_size: config.batch_size,
        drop_last_single: spec.has_batch_norm(),
    };
    std::thread::scope(|scope| -> Result<Trained> {
        let epochs = 1..=config.epochs;
        let mut loader = if config.prefetch {
            Loader::spawn(scope, plan, epochs)?
        } else {
            Loader::inline(plan, epochs)?
        };
        let mut dlogits = Tensor::default();
        let mut history = Vec::new();
        let mut global_step = 0;

        for epoch in 1..=config.epochs {
            let started = Instant::now();
            let (mut loss_sum, mut hits, mut lr) = (0.0f64, 0usize, 0.0);

            for step in 1..=steps_per_epoch {
                let batch = loader.next().expect("the loader holds every step of the run")?;
                debug_assert_eq!((batch.epoch, batch.step), (epoch, step), "batches in run order");
                let (x, targets) = (&batch.x, &batch.targets);
                schedule.apply(global_step, optimizer.as_mut());
                lr = optimizer.lr();

                // Forward, fused loss and dlogits, backward, update.
                model.net.zero_grad();
                let logits = model.net.forward(x, Mode::Train)?;
                let rows = logits.data().chunks(logits.row_width().max(1));
                hits += rows.zip(targets).filter(|(row, &t)| argmax(row) as i64 == t).count();
                let loss =
                    loss::cross_entropy_classes_into(logits, targets, &ce, &mut dlogits)? as f32;
                if !loss.is_finite() {
                    return Err(Error::Diverged { epoch, step, loss });
                }
                model.net.backward(&dlogits);
                optimizer.step(&mut model.net.params_mut());

                loss_sum += f64::from(loss) * targets.len() as f64;
                global_step += 1;
                observer.on_step(&StepReport {
                    epoch,
                    step,
                    steps: steps_per_epoch,
                    loss,
                    lr,
                    images: (step - 1) * config.batch_size + targets.len(),
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
            let seconds = started.elapsed().as_secs_f64();

            // Evaluate (never augmented), record, save.
            let eval_started = Instant::now();
            let eval = evaluate(&mut model, &split.test)?;
            let metrics = EpochMetrics {
                epoch,
                train_loss: loss_sum / samples_per_epoch as f64,
                train_accuracy: hits as f64 / samples_per_epoch as f64,
                test_loss: eval.tally.mean_loss(),
                test_accuracy: eval.tally.accuracy(),
                test_top5_accuracy: eval.tally.top5_accuracy(),
                lr,
                seconds,
                images_per_second: samples_per_epoch as f64 / seconds,
                eval_seconds: eval_started.elapsed().as_secs_f64(),
            };
            history.push(metrics.clone());
            model.info.training = training_summary(config, &history);
            if let Some(writer) = &mut writer {
                writer.save_epoch(&metrics, &model)?;
            }
            observer.on_epoch(&metrics);
        }
        Ok(Trained { model, history })
    })
}

/// The summary stored in the model file's metadata.
fn training_summary(config: &TrainConfig, history: &[EpochMetrics]) -> serde_json::Value {
    let last = history.last();
    serde_json::json!({
        "epochs": history.len(),
        "test_accuracy": last.map(|m| m.test_accuracy),
        "test_loss": last.map(|m| m.test_loss),
        "seconds": history.iter().map(|m| m.seconds).sum::<f64>(),
        "config": config,
        "version": env!("CARGO_PKG_VERSION"),
    })
}
