//! The `xent` binary end to end on the embedded digits: train, eval and
//! predict, and the one-line errors (with exit codes) for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn xent(args: &[&str]) -> Output {
    xent_env(args, &[])
}

fn xent_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xent"));
    command.args(args).env("XENT_DATA", "/nonexistent-xent-data");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the xent binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Trains a small model on digits into `dir/run` and returns the run folder.
fn train_digits(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    let out = xent(&["train", "--epochs", "4", "--out", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    run
}

#[test]
fn train_writes_a_run_folder_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_digits(dir.path());

    // metrics.jsonl: one object per epoch with the documented keys.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let lines: Vec<Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    for key in
        ["epoch", "train_loss", "test_loss", "test_accuracy", "lr", "seconds", "images_per_second"]
    {
        assert!(lines[3].get(key).is_some(), "metrics.jsonl lacks {key}");
    }
    let accuracy = lines[3]["test_accuracy"].as_f64().unwrap();
    assert!((0.9..=1.0).contains(&accuracy), "test accuracy {accuracy}");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["dataset"], "digits");

    // A second run into the same folder is refused and changes nothing.
    let model_before = std::fs::read(run.join("model.safetensors")).unwrap();
    let again = xent(&["train", "--epochs", "1", "--out", run.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    let err = stderr(&again);
    assert!(err.contains("already holds a run") && err.contains("hint: pass --force"), "{err}");
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(), metrics);
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), model_before);

    // With --force it is replaced.
    let forced = xent(&["train", "--epochs", "1", "--out", run.to_str().unwrap(), "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count(), 1);
}

#[test]
fn eval_and_predict_use_the_model_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_digits(dir.path());
    let model = run.join("model.safetensors");

    // eval --json agrees with the last metrics line.
    let out = xent(&["eval", "--model", model.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(report["accuracy"], last["test_accuracy"]);
    assert_eq!(report["samples"], 355);
    assert_eq!(report["confusion_matrix"].as_array().unwrap().len(), 10);
    let text = xent(&["eval", "--model", model.to_str().unwrap()]);
    assert!(stdout(&text).contains("confusion matrix"), "{}", stdout(&text));

    // predict: a 16×16 PNG of a bar is resized to 8×8 and classified.
    let png = dir.path().join("bar.png");
    let bar = image::GrayImage::from_fn(16, 16, |x, _| {
        image::Luma([if (6..10).contains(&x) { 255 } else { 0 }])
    });
    bar.save(&png).unwrap();
    let out = xent(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        png.to_str().unwrap(),
        "--json",
        "--top",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let prediction: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let probs: Vec<f64> =
        prediction["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect();
    assert_eq!(probs.len(), 10);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    assert_eq!(prediction["top"].as_array().unwrap().len(), 2);

    // A file that is not an image: the error names it, nothing panics.
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    let out = xent(&["predict", "--model", model.to_str().unwrap(), junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("junk.png: cannot decode image"), "{}", stderr(&out));

    // A JPEG cut short before its end marker is refused, as training does,
    // rather than classified with its missing part filled in.
    let jpeg = dir.path().join("bar.jpg");
    bar.save(&jpeg).unwrap();
    let out = xent(&["predict", "--model", model.to_str().unwrap(), jpeg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&jpeg).unwrap();
    std::fs::write(&jpeg, &bytes[..bytes.len() - 2]).unwrap();
    let out = xent(&["predict", "--model", model.to_str().unwrap(), jpeg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bar.jpg: truncated"), "{}", stderr(&out));
}

#[test]
fn missing_dataset_says_where_it_looked_and_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let unused = dir.path().join("unused");
    let args = ["train", "--dataset", "mnist", "--out", unused.to_str().unwrap()];
    let out = xent_env(&args, &[("XENT_DATA", dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let where_ = dir.path().join("mnist");
    assert!(err.starts_with("error: dataset mnist:"), "{err}");
    assert!(err.contains(&where_.display().to_string()) && err.contains("hint:"), "{err}");
    assert!(!unused.exists());

    // A path that does not exist, or a file that is no dataset, says so.
    let nowhere = dir.path().join("no/such/folder");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "hello").unwrap();
    for (path, want) in [(&nowhere, "no such file or folder"), (&file, "not a dataset")] {
        let out = xent(&["train", "--dataset", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains(want), "{}", stderr(&out));
    }
}

#[test]
fn truncated_idx_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("broken");
    std::fs::create_dir(&folder).unwrap();
    // A header for 2 images of 4×4, then only 20 of the 32 pixel bytes.
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4];
    images.extend([7u8; 20]);
    let labels = [0, 0, 8, 1, 0, 0, 0, 2, 1, 2];
    for split in ["train", "t10k"] {
        std::fs::write(folder.join(format!("{split}-images-idx3-ubyte")), &images).unwrap();
        std::fs::write(folder.join(format!("{split}-labels-idx1-ubyte")), labels).unwrap();
    }
    let out = xent(&[
        "train",
        "--dataset",
        folder.to_str().unwrap(),
        "--out",
        dir.path().join("r").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("images-idx3-ubyte") && err.lines().count() <= 3, "{err}");
    assert!(!dir.path().join("r").exists(), "no run folder for a dataset that fails to load");
}

#[test]
fn val_fraction_is_refused_for_an_idx_folder() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("idx");
    std::fs::create_dir(&folder).unwrap();
    // Two 2×2 images labelled 0 and 1 in each split.
    let images = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 9, 9, 0, 9, 0, 0, 9];
    let labels = [0, 0, 8, 1, 0, 0, 0, 2, 0, 1];
    for split in ["train", "t10k"] {
        std::fs::write(folder.join(format!("{split}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(folder.join(format!("{split}-labels-idx1-ubyte")), labels).unwrap();
    }
    let run = dir.path().join("r");
    let args = ["train", "--dataset", folder.to_str().unwrap(), "--epochs", "1"];
    let out =
        xent(&[&args[..], &["--val-fraction", "0.5", "--out", run.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--val-fraction holds out part of a dataset that has no test split"));
    assert!(err.contains("idx has its own test split") && err.lines().count() == 1, "{err}");
    assert!(!run.exists(), "nothing is written for a refused option");

    // Without it the same folder trains.
    let out = xent(&[&args[..], &["--out", run.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn eval_reads_a_model_that_records_a_val_fraction_training_ignored() {
    // Model files from before the refusal may hold one for digits.
    let dir = tempfile::tempdir().unwrap();
    let run = train_digits(dir.path());
    let mut model = xent::io::Model::load(&run).unwrap();
    model.info.import.val_fraction = Some(0.1);
    model.save(&run.join("model.safetensors")).unwrap();
    let out = xent(&["eval", "--model", run.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["samples"], 355);
}

#[test]
fn an_idx_file_of_no_images_is_named_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("empty");
    std::fs::create_dir(&folder).unwrap();
    // Training files of 0 images of 2×2; a test pair of one image.
    let empty_images = [0, 0, 8, 3, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2];
    std::fs::write(folder.join("train-images-idx3-ubyte"), empty_images).unwrap();
    std::fs::write(folder.join("train-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 0]).unwrap();
    let images = [0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 9, 9, 0];
    std::fs::write(folder.join("t10k-images-idx3-ubyte"), images).unwrap();
    std::fs::write(folder.join("t10k-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 1, 0]).unwrap();
    let run = dir.path().join("r");
    let args = ["train", "--dataset", folder.to_str().unwrap(), "--out", run.to_str().unwrap()];
    let out = xent(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let file = folder.join("train-images-idx3-ubyte");
    let want = format!("error: {}: holds no images", file.display());
    assert!(err.starts_with(&want) && err.lines().count() == 1, "{err}");
    assert!(!run.exists());
}

#[test]
fn diverging_run_names_epoch_and_step_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args = [
        "train",
        "--optimizer",
        "sgd",
        "--lr",
        "0.01",
        "--schedule",
        "step:23:1e9",
        "--epochs",
        "3",
    ];
    let out = xent(&[&args[..], &["--out", run.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("at epoch 2, step") && err.contains("hint:"), "{err}");
    assert!(run.join("model.safetensors").exists(), "epoch 1's model is kept");
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let unused = dir.path().join("unused");
    let spec =
        xent(&["train", "--model", "conv(8)-flatten-linear", "--out", unused.to_str().unwrap()]);
    assert_eq!(spec.status.code(), Some(2));
    assert!(stderr(&spec).contains("conv needs (out_channels, kernel)"), "{}", stderr(&spec));

    let optimizer = xent(&["train", "--optimizer", "rmsprop", "--out", unused.to_str().unwrap()]);
    assert_eq!(optimizer.status.code(), Some(2));
    assert!(stderr(&optimizer).contains("unknown optimizer"), "{}", stderr(&optimizer));

    let usage = xent(&["train", "--epochs", "many"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(!unused.exists());
}

#[test]
fn force_with_a_bad_option_keeps_the_earlier_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_digits(dir.path());
    let model = std::fs::read(run.join("model.safetensors")).unwrap();
    let out_dir = run.to_str().unwrap();
    for bad in [
        &["--label-smoothing", "2"][..],
        &["--threads", "0"],
        &["--lr", "-1"],
        &["--model", "flatten-linear(100000000)-linear"],
    ] {
        let out = xent(&[&["train", "--out", out_dir, "--force"][..], bad].concat());
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), model, "{bad:?}");
    }

    // eval takes the run folder as well as the file in it.
    let out = xent(&["eval", "--model", out_dir, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_run_that_fails_in_its_first_epoch_does_not_block_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = xent(&["train", "--optimizer", "sgd", "--lr", "1e6", "--out", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("at epoch 1, step"), "{}", stderr(&out));
    assert!(!run.join("model.safetensors").exists());

    let again = xent(&["train", "--epochs", "1", "--out", run.to_str().unwrap()]);
    assert!(again.status.success(), "{}", stderr(&again));
}

/// The three files of a run folder, by name.
fn run_files(run: &Path) -> Vec<(&'static str, Vec<u8>)> {
    ["model.safetensors", "metrics.jsonl", "config.json"]
        .into_iter()
        .map(|name| (name, std::fs::read(run.join(name)).unwrap()))
        .collect()
}

#[test]
fn force_keeps_the_earlier_run_until_the_new_one_saves_an_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_digits(dir.path());
    let before = run_files(&run);
    let out_dir = run.to_str().unwrap();

    // A forced run that diverges at once leaves every file byte for byte.
    let diverging = ["train", "--optimizer", "sgd", "--lr", "1e6", "--force", "--out", out_dir];
    let out = xent(&diverging);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("at epoch 1, step"), "{}", stderr(&out));
    assert_eq!(run_files(&run), before);
    let entries: Vec<_> =
        std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries.len(), 3, "nothing else is left behind: {entries:?}");

    // One that completes its first epoch replaces them, and still diverging
    // later keeps its own first epoch.
    let later =
        ["--optimizer", "sgd", "--lr", "0.01", "--schedule", "step:23:1e9", "--epochs", "3"];
    let out = xent(&[&["train", "--force", "--out", out_dir][..], &later].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("at epoch 2, step"), "{}", stderr(&out));
    let after = run_files(&run);
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        assert_ne!(old, new, "{name} is the new run's");
    }
    let metrics = String::from_utf8(after[1].1.clone()).unwrap();
    assert_eq!(metrics.lines().count(), 1, "{metrics}");
    assert!(!run.join(".xent-new-run").exists());
}

#[test]
fn force_help_says_when_the_earlier_run_is_replaced() {
    // The earlier run survives only a new run that stops before its first
    // saved epoch; one whose loss grows but stays finite replaces it.
    let help = stdout(&xent(&["train", "--help"]));
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for want in [
        "a new run that stops before that (a NaN or infinite loss, another error, an interrupt) \
         loses nothing",
        "Once that epoch is saved the earlier run is replaced, even if the new run's loss then \
         grows (a finite loss is no failure) or it stops later",
    ] {
        assert!(help.contains(want), "{want:?} not in {help}");
    }
}

#[test]
fn divergence_hint_names_the_epoch_whose_model_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args = ["train", "--optimizer", "sgd", "--lr", "0.01", "--schedule", "step:23:1e9"];
    let out = xent(&[&args[..], &["--epochs", "4", "--out", run.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("at epoch 2, step"), "{err}");
    let hint = "hint: lower --lr; the run folder keeps the model of epoch 1, the last completed, \
                and the metrics of epoch 1";
    assert!(err.contains(hint), "{err}");
    assert!(!err.contains("every completed epoch"), "{err}");

    // Diverging in the first epoch: nothing of this run was saved.
    let first = dir.path().join("first");
    let out =
        xent(&["train", "--optimizer", "sgd", "--lr", "1e6", "--out", first.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("at epoch 1, step"), "{err}");
    assert!(err.contains("no epoch completed, so this run saved no model"), "{err}");
}

#[test]
fn options_that_would_do_nothing_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out_dir = run.to_str().unwrap();
    let refused = |args: &[&str], needles: &[&str]| {
        let out = xent(&[&["train", "--epochs", "1", "--out", out_dir][..], args].concat());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
        }
        assert!(!run.exists(), "{args:?}: nothing is written");
    };

    // CIFAR-100's coarse labels for a dataset that has one set of labels.
    refused(&["--labels", "coarse"], &["--labels coarse applies to CIFAR-100 only", "digits"]);

    // A held-out fraction of a dataset that has its own test split.
    refused(&["--val-fraction", "0.2"], &["--val-fraction holds out", "digits has its own test"]);

    // Momentum for an optimiser without one.
    for optimizer in ["adam", "adamw"] {
        let args = ["--optimizer", optimizer, "--momentum", "0.5"];
        refused(&args, &["--momentum 0.5 is for --optimizer sgd only", "beta1"]);
    }

    // An option given twice in a model spec.
    let spec = "conv(4,3,pad=1,pad=2)-flatten-linear";
    refused(&["--model", spec], &["option `pad` is given twice"]);

    // Where they apply, they are taken.
    let out = xent(&["train", "--epochs", "1", "--out", out_dir, "--optimizer", "sgd"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = &dir.path().join("momentum");
    let args = ["--optimizer", "sgd", "--momentum", "0.5", "--schedule", "constant"];
    let out =
        xent(&[&["train", "--epochs", "1", "--out", run.to_str().unwrap()][..], &args].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let config = std::fs::read_to_string(run.join("config.json")).unwrap();
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["optimizer"]["momentum"], 0.5);
    assert_eq!(config["import"]["labels"], "fine");
}

#[test]
fn a_run_too_short_for_onecycle_gets_a_constant_rate_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    // 1,442 digits in batches of 1,000: two steps, too few for onecycle's
    // phases. Without --schedule the run trains at a constant rate and says so.
    let run = out_dir("short");
    let out = xent(&["train", "--batch-size", "1000", "--epochs", "1", "--out", &run]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("schedule=constant"), "{text}");
    let note = "note   the run's 2 step(s) are too few for the default onecycle schedule";
    assert!(text.contains(note), "{text}");
    let config = std::fs::read_to_string(Path::new(&run).join("config.json")).unwrap();
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["schedule"], "constant");

    // A run long enough keeps onecycle, silently.
    let out = xent(&["train", "--batch-size", "1000", "--epochs", "2", "--out", &out_dir("long")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("schedule=onecycle") && !stdout(&out).contains("note"));

    // Asked for by name, onecycle is refused, with the run's step count.
    let args = ["train", "--batch-size", "1000", "--epochs", "1", "--schedule", "onecycle"];
    let out = xent(&[&args[..], &["--out", &out_dir("asked")]].concat());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("(this run has 2 step(s): 1 epoch(s) of 2 batch(es);"), "{err}");
}

#[test]
fn batch_and_schedule_errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let out = xent(&[&["train", "--out", run.to_str().unwrap()][..], extra].concat());
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        stderr(&out)
    };

    // A batch larger than the training split names the number of images.
    let err = train(&["--batch-size", "100000"]);
    assert!(err.contains("--batch-size 100000 is larger than the 1442 training images"), "{err}");
    assert!(!err.contains("schedule"), "{err}");

    // Values no run length fixes get no advice about the run's length.
    for (schedule, want) in [
        ("step:0", "step size 0 must be at least 1"),
        ("cosine:-1", "eta_min -1"),
        ("onecycle:pct_start=2", "pct_start 2"),
        ("onecycle:foo=1", "unknown onecycle key \"foo\""),
    ] {
        let err = train(&["--schedule", schedule]);
        assert!(err.contains(want), "{schedule}: {err}");
        assert!(!err.contains("this run has") && !err.contains("more epochs"), "{err}");
    }
    assert!(!run.exists());
}

#[test]
fn more_threads_than_cores_draws_a_warning_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let cores = std::thread::available_parallelism().unwrap().get();
    let train = |threads: usize, name: &str| {
        let run = dir.path().join(name);
        let threads = threads.to_string();
        let args = ["train", "--epochs", "1", "--threads", &threads, "--out"];
        let out = xent(&[&args[..], &[run.to_str().unwrap()]].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    let err = train(cores + 1, "over");
    let want =
        format!("warning: --threads {} is more than the {cores} core(s) available", cores + 1);
    assert!(err.contains(&want), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(train(cores, "all"), "", "as many threads as cores is fine");
}

#[test]
fn threads_beyond_the_cap_are_refused_before_any_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    for threads in ["1025", "100000"] {
        let args = ["train", "--epochs", "1", "--threads", threads, "--out"];
        let out = xent(&[&args[..], &[run.to_str().unwrap()]].concat());
        assert_eq!(out.status.code(), Some(2), "{threads}: {}", stderr(&out));
        let err = stderr(&out);
        let want = format!("error: --threads must be at most 1024, found {threads}");
        assert!(err.starts_with(&want) && err.lines().count() == 1, "{err}");
        assert!(!run.exists(), "nothing is written");
    }
    let help = stdout(&xent(&["train", "--help"]));
    assert!(help.contains("1 to 1024"), "{help}");
}

#[test]
fn the_default_run_folder_skips_every_existing_path() {
    // runs/digits-mlp and -2 hold runs, -3 is a file: the run goes to -4.
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    for taken in ["digits-mlp", "digits-mlp-2"] {
        std::fs::create_dir_all(runs.join(taken)).unwrap();
        std::fs::write(runs.join(taken).join("metrics.jsonl"), "{}\n").unwrap();
    }
    std::fs::write(runs.join("digits-mlp-3"), "a file").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(["train", "--epochs", "1"])
        .env("XENT_DATA", "/nonexistent-xent-data")
        .current_dir(dir.path())
        .output()
        .expect("the xent binary runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("runs/digits-mlp-4/model.safetensors"), "{}", stdout(&out));
    assert!(runs.join("digits-mlp-4/model.safetensors").exists());
    assert_eq!(std::fs::read_to_string(runs.join("digits-mlp-3")).unwrap(), "a file");
}

#[test]
fn out_must_be_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep me").unwrap();
    let inside = file.join("run");
    for (out, want) in [
        (&file, format!("{} is a file", file.display())),
        (&inside, format!("{} is a file, so {} cannot be", file.display(), inside.display())),
    ] {
        let out = xent(&["train", "--epochs", "1", "--out", out.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(err.starts_with("error: --out must be a folder"), "{err}");
        assert!(err.contains(&want) && err.lines().count() == 1, "{err}");
        assert!(!err.contains("os error"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}
