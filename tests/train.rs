//! The training loop as a whole: it learns, it repeats bit for bit, it stops
//! on a diverging loss and keeps what was saved, and metrics agree with
//! PyTorch's definitions (`metrics.json`).

mod common;

use common::{assert_close, cases, tensor};
use xent::data::{self, Split};
use xent::io::Model;
use xent::loss::{self, CrossEntropy};
use xent::nn::{Mode, ModelSpec};
use xent::optim::{OptimizerConfig, OptimizerKind};
use xent::rng::Rng;
use xent::train::{self, in_top_k, RunDir, Tally, TrainConfig};
use xent::{Error, Tensor};

fn config(model: &str, epochs: usize) -> TrainConfig {
    TrainConfig {
        dataset: "digits".into(),
        import: Default::default(),
        model: model.into(),
        epochs,
        batch_size: 64,
        optimizer: OptimizerConfig { lr: 2e-3, ..OptimizerConfig::new(OptimizerKind::Adam) },
        schedule: "cosine".into(),
        label_smoothing: 0.0,
        seed: 7,
        threads: 2,
        augment: Default::default(),
        normalize: None,
        prefetch: true,
    }
}

fn digits() -> Split {
    data::load("digits").unwrap()
}

/// An MLP must drive the loss on 32 fixed images below 0.01 within 100 full-batch
/// Adam steps: a model that cannot overfit a handful of samples has a broken
/// gradient somewhere.
#[test]
fn mlp_overfits_32_images() {
    let split = digits();
    let batch: Vec<usize> = (0..32).collect();
    let normalize = data::Normalize::measure(&split.train);
    let (mut x, mut targets) = (Tensor::default(), Vec::new());
    data::fill_batch(&split.train, &batch, &normalize, &mut x, &mut targets).unwrap();

    let spec = ModelSpec::parse("flatten-linear(64)-relu-linear").unwrap();
    let mut net = spec.build(&[1, 8, 8], 10, &mut Rng::new(0, 1)).unwrap();
    let adam = OptimizerConfig { lr: 1e-2, ..OptimizerConfig::new(OptimizerKind::Adam) };
    let mut optimizer = adam.build().unwrap();
    let (mut dlogits, mut loss) = (Tensor::default(), f64::INFINITY);
    for _ in 0..100 {
        net.zero_grad();
        let logits = net.forward(&x, Mode::Train).unwrap();
        loss = loss::cross_entropy_classes_into(
            logits,
            &targets,
            &CrossEntropy::default(),
            &mut dlogits,
        )
        .unwrap();
        net.backward(&dlogits);
        optimizer.step(&mut net.params_mut());
    }
    assert!(loss < 0.01, "loss after 100 steps: {loss}");
}

#[test]
fn digits_mlp_reaches_95_percent() {
    let trained = train::train(&digits(), &config("mlp", 10), None, &mut ()).unwrap();
    let last = trained.history.last().unwrap();
    assert!(last.test_accuracy >= 0.95, "test accuracy {}", last.test_accuracy);
    assert!(last.train_loss < trained.history[0].train_loss);
}

#[test]
fn same_seed_same_threads_gives_identical_weights() {
    let split = digits();
    let small = Split { train: split.train.take(256), test: split.test.take(64) };
    let cfg = config("conv(4,3,pad=1)-relu-maxpool(2)-flatten-linear", 2);
    let a = train::train(&small, &cfg, None, &mut ()).unwrap();
    let b = train::train(&small, &cfg, None, &mut ()).unwrap();
    let c = train::train(&small, &TrainConfig { seed: 8, ..cfg }, None, &mut ()).unwrap();
    let weights =
        |m: &Model| m.net.params().flat_map(|p| p.value.data().to_vec()).collect::<Vec<_>>();
    assert_eq!(weights(&a.model), weights(&b.model));
    assert_ne!(weights(&a.model), weights(&c.model));
}

/// SGD whose learning rate jumps ×1e9 after the first epoch (23 steps of 64 on
/// the digits' 1,442 training images): epoch 2 diverges, the error names it,
/// and the run folder still holds epoch 1's model and metrics.
#[test]
fn divergence_stops_with_epoch_and_step_and_keeps_the_last_good_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path(), false).unwrap();
    let mut cfg = config("mlp", 3);
    cfg.optimizer = OptimizerConfig { lr: 0.01, ..OptimizerConfig::new(OptimizerKind::Sgd) };
    cfg.schedule = "step:23:1e9".into();

    let err = train::train(&digits(), &cfg, Some(&run), &mut ()).unwrap_err();
    let Error::Diverged { epoch, step, loss } = err else { panic!("expected Diverged, got {err}") };
    assert_eq!(epoch, 2);
    assert!(step >= 1 && !loss.is_finite(), "step {step} loss {loss}");
    let message = Error::Diverged { epoch, step, loss }.to_string();
    assert!(message.contains("epoch 2") && message.contains(&format!("step {step}")), "{message}");

    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1, "{metrics}");
    let model = Model::load(&run.model_path()).unwrap();
    assert!(model.net.params().all(|p| p.value.data().iter().all(|v| v.is_finite())));
    assert_eq!(model.info.training["epochs"], 1);
}

#[test]
fn run_folder_is_never_reused_without_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics.jsonl"), "{\"epoch\":1}\n").unwrap();
    let err = RunDir::new(dir.path(), false).unwrap_err();
    assert!(matches!(err, Error::RunExists { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap(),
        "{\"epoch\":1}\n"
    );

    // With force, the earlier run stays until the new one has saved an epoch:
    // a writer dropped before that leaves it, and no staging folder, behind.
    let forced = RunDir::new(dir.path(), true).unwrap();
    let writer = forced.create().unwrap();
    assert!(dir.path().join(".xent-new-run").is_dir());
    drop(writer);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap(),
        "{\"epoch\":1}\n"
    );
    assert!(!dir.path().join(".xent-new-run").exists());

    // A run diverging in its first epoch replaces nothing; one that completes
    // an epoch replaces the earlier run's files.
    let mut cfg = config("mlp", 1);
    cfg.optimizer = OptimizerConfig { lr: 1e6, ..OptimizerConfig::new(OptimizerKind::Sgd) };
    cfg.schedule = "constant".into();
    let err = train::train(&digits(), &cfg, Some(&forced), &mut ()).unwrap_err();
    assert!(matches!(err, Error::Diverged { epoch: 1, .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap(),
        "{\"epoch\":1}\n"
    );
    assert!(!dir.path().join("model.safetensors").exists());
    assert!(!dir.path().join(".xent-new-run").exists());
    train::train(&digits(), &config("linear", 1), Some(&forced), &mut ()).unwrap();
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert!(metrics.starts_with("{\"epoch\":1,\"train_loss\""), "{metrics}");
    assert!(Model::load(&forced.model_path()).is_ok());
    assert!(!dir.path().join(".xent-new-run").exists());
}

#[test]
fn model_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let split = digits();
    let small = Split { train: split.train.take(128), test: split.test.take(32) };
    let mut trained = train::train(&small, &config("linear", 1), None, &mut ()).unwrap();
    let path = dir.path().join("m.safetensors");
    trained.model.save(&path).unwrap();
    let mut loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.info, trained.model.info);
    let names = |m: &Model| m.net.named_params().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(&loaded), vec!["1.weight", "1.bias"]);
    let a = train::evaluate(&mut trained.model, &small.test).unwrap();
    let b = train::evaluate(&mut loaded, &small.test).unwrap();
    assert_eq!(a.tally.loss_sum, b.tally.loss_sum);

    // Not a model file: a clear error naming it.
    std::fs::write(dir.path().join("junk.safetensors"), b"not a model").unwrap();
    let err = Model::load(&dir.path().join("junk.safetensors")).unwrap_err().to_string();
    assert!(err.contains("junk.safetensors") && err.contains("not a safetensors file"), "{err}");

    // Metadata that would silently change every prediction, or that does not
    // fit the weights, is refused with the file named.
    let tampered = dir.path().join("tampered.safetensors");
    let save_with = |edit: &dyn Fn(&mut Model)| {
        let mut model = Model::load(&path).unwrap();
        edit(&mut model);
        model.save(&tampered).unwrap();
        Model::load(&tampered).unwrap_err().to_string()
    };
    let err = save_with(&|m| m.info.pixel_max = 0.0);
    assert!(err.contains("tampered.safetensors") && err.contains("pixel_max"), "{err}");
    let err = save_with(&|m| m.info.normalize.std = vec![0.0]);
    assert!(err.contains("normalize"), "{err}");
    let err = save_with(&|m| m.info.classes.truncate(1));
    assert!(err.contains("tampered.safetensors") && err.contains("does not fit"), "{err}");
}

#[test]
fn an_empty_test_split_is_refused() {
    let split = digits();
    let empty = Split { train: split.train.take(64), test: split.test.take(0) };
    let err = train::train(&empty, &config("linear", 1), None, &mut ()).unwrap_err().to_string();
    assert!(err.contains("test split holds no images"), "{err}");
}

// metrics.json: every case — argmax with PyTorch's first-maximum tie rule,
// top-k hits, accuracies and the confusion matrix.
#[test]
fn metrics_match_pytorch() {
    let all = cases("metrics.json");
    for case in &all {
        let name = case["name"].as_str().unwrap();
        let logits = tensor(&case["inputs"]["logits"]).tensor();
        let labels = tensor(&case["inputs"]["labels"]).i64();
        let classes = case["options"]["num_classes"].as_u64().unwrap() as usize;
        let outputs = &case["outputs"];

        let mut tally = Tally::new(classes);
        for (i, &label) in labels.iter().enumerate() {
            tally.add(logits.row(i), label as usize);
        }
        let argmax: Vec<f32> = logits.argmax_rows().iter().map(|&p| p as f32).collect();
        assert_close(
            &format!("{name} argmax"),
            &argmax,
            &tensor(&outputs["predictions_argmax"]).data,
            0.0,
            0.0,
        );
        let confusion: Vec<f32> = tally.confusion.iter().map(|&c| c as f32).collect();
        assert_close(
            &format!("{name} confusion"),
            &confusion,
            &tensor(&outputs["confusion_matrix"]).data,
            0.0,
            0.0,
        );
        let top1 = tensor(&outputs["top1_accuracy"]).data;
        assert_close(&format!("{name} top1"), &[tally.accuracy() as f32], &top1, 1e-7, 0.0);

        // Top-k for every k given, where no tie makes the order unspecified.
        for k in
            case["options"]["k"].as_array().unwrap().iter().map(|k| k.as_u64().unwrap() as usize)
        {
            if k == 1 || outputs.get(format!("top{k}_correct")).is_none() {
                continue;
            }
            let hits: Vec<f32> = labels
                .iter()
                .enumerate()
                .map(|(i, &l)| f32::from(u8::from(in_top_k(logits.row(i), l as usize, k))))
                .collect();
            assert_close(
                &format!("{name} top{k}"),
                &hits,
                &tensor(&outputs[format!("top{k}_correct")]).data,
                0.0,
                0.0,
            );
        }
    }
    assert_eq!(all.len(), 3);
}
