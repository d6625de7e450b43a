//! `xent train`: options, the run folder name, and progress output (a bar
//! per epoch on a terminal, plain step lines otherwise).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use xent::data::{Augment, LabelKind, LoadOptions, Normalize};
use xent::nn::spec::PRESETS;
use xent::optim::{OptimizerConfig, OptimizerKind, Schedule};
use xent::train::{self, EpochMetrics, Header, Observer, RunDir, StepReport, TrainConfig};
use xent::{Error, Result};

use super::data::{parse_size, print_import_report};
use super::{percent, thousands};

/// Options of `xent train`.
#[derive(Debug, Args)]
#[command(after_long_help = SPEC_HELP, allow_negative_numbers = true)]
pub struct TrainArgs {
    /// Dataset: digits (embedded), mnist, fashion-mnist, kmnist, cifar10, cifar100 (from
    /// $XENT_DATA), a folder of images (one sub-folder per class, in train/ and test/ or val/),
    /// a folder of MNIST-style IDX files or CIFAR .bin files, or a pixel .csv file.
    #[arg(long, default_value = "digits")]
    dataset: String,
    /// Download a named dataset first (files already present and verified are kept).
    #[arg(long)]
    download: bool,
    /// CIFAR-100 labels: fine (100 classes) or coarse (20 superclasses); coarse is refused for
    /// other datasets.
    #[arg(long, value_enum, default_value_t = Labels::Fine)]
    labels: Labels,
    /// Image folders: convert every image to 1 (grey) or 3 (RGB) channels [default: the mode
    /// most images have, 3 on a tie].
    #[arg(long)]
    channels: Option<usize>,
    /// Image folders: resize every image to HxW with a bilinear filter [default: sizes must
    /// agree].
    #[arg(long, value_name = "HxW", value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// Image folders: leave out (and list) files that cannot be decoded instead of failing.
    #[arg(long)]
    skip_bad: bool,
    /// Image folders without test/ or val/, and .csv files: hold out this fraction of each class
    /// for testing (seeded by --seed; a .csv file's test.csv is then not used). Refused for
    /// datasets with their own test split.
    #[arg(long, value_name = "F")]
    val_fraction: Option<f64>,
    /// Preset (linear, mlp, lenet, lenet-bn, convnet) or a model spec such as
    /// "conv(16,5,pad=2)-relu-maxpool(2)-flatten-linear" (see below).
    #[arg(long, default_value = "mlp")]
    model: String,
    /// Passes over the training data.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Images per step, at most the number of training images [default: 64, or all the
    /// training images when fewer]. The last batch of an epoch may be smaller; a model with bn
    /// leaves out a last batch of a single image, which batch norm cannot train on (every epoch
    /// leaves out another image, by the shuffle).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate: the peak of the onecycle schedule, the start of the others
    /// [default: 3e-3 for adam and adamw, 0.05 for sgd].
    #[arg(long)]
    lr: Option<f64>,
    /// Optimiser: sgd, adam or adamw.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// SGD momentum [default: 0.9] (onecycle cycles it from 0.95 to 0.85). Refused for adam and
    /// adamw: their counterpart is beta1, 0.9, which onecycle cycles the same way.
    #[arg(long)]
    momentum: Option<f64>,
    /// Weight decay: L2 for sgd and adam, decoupled for adamw [default: 0, adamw 0.01].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Learning-rate schedule, stepped once per batch: onecycle[:KEY=VALUE]... (PyTorch's
    /// OneCycleLR: warm up to --lr over 30% of the steps, then anneal; it also cycles SGD
    /// momentum or Adam's beta1), cosine[:ETA_MIN], step:STEPS[:GAMMA], or constant
    /// [default: onecycle, or constant for a run too short for onecycle's phases (fewer than 4
    /// steps), as the header then says].
    #[arg(long)]
    schedule: Option<String>,
    /// Label smoothing of the cross-entropy, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f32,
    /// How training batches are made: augmentation, normalisation, prefetching (boxed, so the
    /// enum of subcommands stays small).
    #[command(flatten)]
    batches: Box<BatchArgs>,
    /// Seed for initialisation, shuffling and augmentation; same seed and threads, same run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads, 1 to 1024 [default: all cores, at most 1024]; more than the cores
    /// available draws a warning, as it slows training down. The cap is fixed, not a multiple
    /// of the cores, so a run can be repeated with its --threads on any machine.
    #[arg(long)]
    threads: Option<usize>,
    /// Run folder, created when missing [default: runs/<dataset>-<model>, or with -2, -3, …
    /// appended past any path that exists].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the run already in --out. The earlier run's files stay as they are until the new
    /// run has saved its first epoch (it trains in a hidden .xent-new-run/ sub-folder until
    /// then), so a new run that stops before that (a NaN or infinite loss, another error, an
    /// interrupt) loses nothing. Once that epoch is saved the earlier run is replaced, even if
    /// the new run's loss then grows (a finite loss is no failure) or it stops later.
    #[arg(long)]
    force: bool,
    /// Print a step line every N steps when not on a terminal [default: every 2 s].
    #[arg(long)]
    log_every: Option<usize>,
    /// Print only the summary.
    #[arg(long)]
    quiet: bool,
}

/// Options of `xent train` that shape its training batches.
#[derive(Debug, Args)]
struct BatchArgs {
    /// Random transforms of the training images, comma-separated: crop:PAD (pad PAD zero pixels
    /// on each side, crop back to the original size at a random offset) and flip (mirror
    /// left-right half of the time), or none. Test images are never augmented.
    #[arg(long, value_name = "LIST", default_value = "none")]
    augment: Augment,
    /// Per-channel means of the [0, 1]-scaled pixels to normalise with, e.g. 0.49,0.48,0.45
    /// [default: measured on the training split].
    #[arg(long, value_name = "M,..", value_delimiter = ',', requires = "std")]
    mean: Option<Vec<f32>>,
    /// Per-channel standard deviations to go with --mean, e.g. 0.25,0.24,0.26.
    #[arg(long, value_name = "S,..", value_delimiter = ',', requires = "mean")]
    std: Option<Vec<f32>>,
    /// Build batches on the training thread instead of one ahead on a background thread (same
    /// results, usually slower).
    #[arg(long)]
    no_prefetch: bool,
}

/// `--labels`: CIFAR-100's fine or coarse classes.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Labels {
    /// The 100 fine classes.
    Fine,
    /// The 20 coarse superclasses.
    Coarse,
}

const SPEC_HELP: &str = "\
Model specs: layers joined by '-', arguments in parentheses, each option at most once.
  linear(OUT[,bias=false])      bare 'linear' at the end gives one score per class
  conv(OUT,K[,stride=S][,pad=P][,groups=G][,bias=false])   K, S, P may be AxB
  maxpool(K[,stride=S][,pad=P]) stride defaults to K
  bn[(eps=E,momentum=M,affine=false)]  batch normalisation over the channels; training leaves
                                out a last batch of one image, which it cannot train on
  relu, flatten
Presets:
  linear   = flatten-linear
  mlp      = flatten-linear(512)-relu-linear(256)-relu-linear
  lenet    = conv(6,5,pad=2)-relu-maxpool(2)-conv(16,5)-relu-maxpool(2)-flatten
             -linear(120)-relu-linear(84)-relu-linear
  lenet-bn = lenet with bn after each conv
  convnet  = conv(32,3,pad=1)-bn-relu-maxpool(2)-conv(64,3,pad=1)-bn-relu-maxpool(2)
             -conv(128,3,pad=1)-bn-relu-maxpool(2)-flatten-linear";

/// Runs `xent train`.
pub fn run(args: &TrainArgs) -> Result<()> {
    let mut config = config_from(args)?;
    config.validate()?;
    warn_about_threads(config.threads);

    // The run folder: as given, or the first free runs/<dataset>-<model>[-N].
    // Checked before the data is read, created only once training starts.
    let out = match &args.out {
        Some(out) => out.clone(),
        None => free_run_folder(&args.dataset, &args.model),
    };
    check_out_folder(&out)?;
    let run = RunDir::new(&out, args.force)?;

    // The data: fetched first when asked, then read with the import options.
    if args.download {
        super::download::fetch_dataset(&args.dataset, &xent::data::data_dir(), &[])?;
    }
    let (split, report) = xent::data::load_with(&args.dataset, &config.import)?;
    print_import_report(&args.dataset, &report, args.quiet);
    check_batch_size(args, &split.train)?;
    let note = default_schedule(args, &mut config, split.train.len())?;
    let named = xent::data::DATASETS.contains(&args.dataset.as_str());
    if let (false, Ok(absolute)) = (named, std::fs::canonicalize(&args.dataset)) {
        // A dataset given as a path is recorded absolute, so the model file
        // still finds it from another directory.
        config.dataset = absolute.display().to_string();
    }

    let started = Instant::now();
    let mut printer = Printer::new(args, &config, note);
    let trained = train::train(&split, &config, Some(&run), &mut printer)?;
    printer.finish();

    // The saved model is the last epoch's; the best is shown beside it.
    let last = trained.history.last().expect("at least one epoch ran");
    let best = trained.best().expect("at least one epoch ran");
    let (acc, epoch) = (percent(last.test_accuracy), last.epoch);
    print!("done   test acc {acc} (epoch {epoch}, saved)");
    if best.test_accuracy > last.test_accuracy {
        print!(" | best {} (epoch {})", percent(best.test_accuracy), best.epoch);
    }
    let path = run.model_path();
    println!(" | {:.1} s | {}", started.elapsed().as_secs_f64(), path.display());
    Ok(())
}

/// Refuses an --out that cannot be a folder: a file there, or in place of
/// one of its parents, would only fail once training starts, with the
/// operating system's terse "File exists".
fn check_out_folder(out: &Path) -> Result<()> {
    let Some(existing) = out.ancestors().find(|p| p.exists()) else { return Ok(()) };
    if existing.is_dir() {
        return Ok(());
    }
    let what = if existing == out {
        format!("{} is a file", out.display())
    } else {
        format!("{} is a file, so {} cannot be a folder", existing.display(), out.display())
    };
    Err(Error::arg(format!("--out must be a folder (it is created when missing), and {what}")))
}

/// The schedule a run gets when none is given.
const DEFAULT_SCHEDULE: &str = "onecycle";

/// The batch size a run gets when none is given.
const DEFAULT_BATCH: usize = 64;

/// A batch larger than the training split would train on fewer images than
/// asked for each step, so an explicit one is refused; the default takes
/// all the images of a smaller split.
fn check_batch_size(args: &TrainArgs, train: &xent::data::Dataset) -> Result<()> {
    match args.batch_size {
        Some(batch) if batch > train.len() => Err(Error::arg(format!(
            "--batch-size {batch} is larger than the {} training images of {}; give at most {}",
            train.len(),
            args.dataset,
            train.len()
        ))),
        _ => Ok(()),
    }
}

/// Replaces the default schedule by a constant rate when the run is too
/// short for onecycle's warm-up and anneal, since a default must not make a
/// valid run fail; returns the header note that says so. A schedule given
/// with --schedule is kept, and refused when it does not fit.
fn default_schedule(
    args: &TrainArgs,
    config: &mut TrainConfig,
    train_len: usize,
) -> Result<Option<String>> {
    if args.schedule.is_some() {
        return Ok(None);
    }
    let steps = config.epochs * config.steps_per_epoch(train_len)?;
    if !Schedule::too_short(DEFAULT_SCHEDULE, config.optimizer.lr, steps) {
        return Ok(None);
    }
    config.schedule = "constant".into();
    Ok(Some(format!(
        "the run's {steps} step(s) are too few for the default onecycle schedule, so the \
         learning rate stays at {:.1e} (--schedule chooses another)",
        config.optimizer.lr
    )))
}

fn config_from(args: &TrainArgs) -> Result<TrainConfig> {
    let kind: OptimizerKind = args.optimizer.parse()?;
    let lr = args.lr.unwrap_or(match kind {
        OptimizerKind::Sgd => 0.05,
        OptimizerKind::Adam | OptimizerKind::AdamW => 3e-3,
    });
    let mut optimizer = OptimizerConfig::new(kind);
    optimizer.lr = lr;
    if let Some(weight_decay) = args.weight_decay {
        optimizer.weight_decay = weight_decay;
    }
    match (kind, args.momentum) {
        (OptimizerKind::Sgd, momentum) => optimizer.momentum = momentum.unwrap_or(0.9),
        (_, Some(momentum)) => {
            return Err(Error::arg(format!(
                "--momentum {momentum} is for --optimizer sgd only; {kind} has no momentum \
                 option: its counterpart is beta1 of its betas, fixed at {} (onecycle cycles it \
                 from 0.95 to 0.85)",
                optimizer.betas.0
            )));
        }
        (_, None) => {}
    }
    Ok(TrainConfig {
        dataset: args.dataset.clone(),
        import: LoadOptions {
            channels: args.channels,
            size: args.size,
            skip_bad: args.skip_bad,
            val_fraction: args.val_fraction,
            labels: match args.labels {
                Labels::Fine => LabelKind::Fine,
                Labels::Coarse => LabelKind::Coarse,
            },
            seed: args.seed,
        },
        model: args.model.clone(),
        epochs: args.epochs,
        batch_size: args.batch_size.unwrap_or(DEFAULT_BATCH),
        optimizer,
        schedule: args.schedule.clone().unwrap_or_else(|| DEFAULT_SCHEDULE.into()),
        label_smoothing: args.label_smoothing,
        seed: args.seed,
        threads: args.threads.unwrap_or_else(default_threads),
        augment: args.batches.augment,
        normalize: match (&args.batches.mean, &args.batches.std) {
            (Some(mean), Some(std)) => Some(Normalize { mean: mean.clone(), std: std.clone() }),
            _ => None,
        },
        prefetch: !args.batches.no_prefetch,
    })
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(train::MAX_THREADS))
}

/// More threads than cores only take turns on them: each step waits for the
/// slowest share, so training slows down instead of speeding up. The run
/// goes on; the user may have a reason.
fn warn_about_threads(threads: usize) {
    let Ok(cores) = std::thread::available_parallelism() else { return };
    if threads > cores.get() {
        eprintln!(
            "warning: --threads {threads} is more than the {cores} core(s) available; the \
             extra threads take turns on them and slow training down (leave out --threads to \
             use one per core)"
        );
    }
}

/// `runs/<dataset>-<model>`, or with `-2`, `-3`, … appended when taken, so a
/// default run never lands on an earlier one. Any existing path is taken: a
/// file there could not be the run folder, and a folder, even one without a
/// run, may be someone's.
fn free_run_folder(dataset: &str, model: &str) -> PathBuf {
    let clean = |s: &str| -> String {
        let name = std::path::Path::new(s).file_name().map_or(s.into(), |f| f.to_string_lossy());
        let safe = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' });
        safe.take(40).collect()
    };
    let is_preset = PRESETS.iter().any(|(name, _)| *name == model);
    let model = if is_preset { model } else { "custom" };
    let base = format!("runs/{}-{}", clean(dataset), model);
    (1..)
        .map(|i| if i == 1 { PathBuf::from(&base) } else { PathBuf::from(format!("{base}-{i}")) })
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .expect("some numbered folder is free")
}

/// Prints the header, per-step progress and per-epoch evaluation lines.
struct Printer {
    quiet: bool,
    bar: Option<ProgressBar>,
    /// Plain step lines: every N steps, or (0) every [`LOG_SECONDS`].
    log_every: Option<usize>,
    last_log: f64,
    settings: String,
    /// A line for the header about a choice made for the user.
    note: Option<String>,
}

/// Seconds between plain step lines when no `--log-every` is given.
const LOG_SECONDS: f64 = 2.0;

impl Printer {
    fn new(args: &TrainArgs, config: &TrainConfig, note: Option<String>) -> Printer {
        let terminal = std::io::stdout().is_terminal();
        let mut settings = format!(
            "batch={} optimizer={} lr={:.1e} schedule={} epochs={} seed={} threads={}",
            config.batch_size,
            args.optimizer,
            config.optimizer.lr,
            config.schedule,
            config.epochs,
            config.seed,
            config.threads
        );
        if !config.augment.is_none() {
            settings += &format!(" augment={}", config.augment);
        }
        Printer {
            quiet: args.quiet,
            bar: None,
            log_every: if terminal { None } else { Some(args.log_every.unwrap_or(0)) },
            last_log: 0.0,
            settings,
            note,
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Printer {
    fn on_start(&mut self, h: &Header) {
        if self.quiet {
            return;
        }
        println!("xent   {}", env!("CARGO_PKG_VERSION"));
        println!("model  {}", h.spec);
        println!(
            "config params={} input={:?} classes={} train={} test={} {}",
            thousands(h.params as u64),
            h.input_shape,
            h.classes,
            h.train_len,
            h.test_len,
            self.settings
        );
        if let Some(note) = &self.note {
            println!("note   {note}");
        }
    }

    fn on_step(&mut self, s: &StepReport) {
        if self.quiet {
            return;
        }
        let rate = s.images as f64 / s.seconds.max(1e-9);
        let ms = 1e3 * s.seconds / s.step as f64;
        match self.log_every {
            Some(every) => {
                if s.step == 1 {
                    self.last_log = 0.0;
                }
                let due = match every {
                    0 => s.seconds - self.last_log >= LOG_SECONDS,
                    n => s.step.is_multiple_of(n),
                };
                if due {
                    self.last_log = s.seconds;
                    let (step, steps, epoch) = (s.step, s.steps, s.epoch);
                    print!("step   {step:>5}/{steps} | epoch {epoch:>2} | loss {:.4}", s.loss);
                    println!(" | lr {:.1e} | {ms:>6.2} ms | {:>6} img/s", s.lr, human(rate));
                }
            }
            None => {
                let bar = self.bar.get_or_insert_with(|| new_bar(s.steps));
                if s.step == 1 {
                    bar.reset();
                    bar.set_length(s.steps as u64);
                }
                bar.set_prefix(format!("epoch {:>2}", s.epoch));
                bar.set_message(format!("loss {:.4} | {} img/s", s.loss, human(rate)));
                bar.set_position(s.step as u64);
            }
        }
    }

    fn on_epoch(&mut self, m: &EpochMetrics) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let (epoch, train_loss, test_loss) = (m.epoch, m.train_loss, m.test_loss);
        print!("eval   epoch {epoch:>2} | train loss {train_loss:.4} | test loss {test_loss:.4}");
        let accuracy = percent(m.test_accuracy);
        println!(
            " | test acc {accuracy:>7} | {:.1} s | {} img/s",
            m.seconds,
            human(m.images_per_second)
        );
    }
}

fn new_bar(steps: usize) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos:>5}/{len} | {msg}")
        .expect("the template is valid")
        .progress_chars("=> ");
    ProgressBar::new(steps as u64).with_style(style)
}

/// `12.3k`, `1.2M`: rates at a glance.
fn human(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}
