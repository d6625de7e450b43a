//! Real MNIST from `$XENT_DATA` (skipped, with a note, when absent): a model
//! trained on it gives the same class and probabilities for a test image
//! whether the image comes from the dataset or from a PNG through
//! `xent predict`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use xent::data::{self, Split};
use xent::loss;
use xent::nn::Mode;
use xent::optim::{OptimizerConfig, OptimizerKind};
use xent::train::{self, TrainConfig};
use xent::Tensor;

fn mnist() -> Option<Split> {
    let dir = PathBuf::from(std::env::var_os("XENT_DATA")?);
    if !dir.join("mnist").is_dir() {
        return None;
    }
    Some(data::load("mnist").expect("MNIST in $XENT_DATA reads"))
}

#[test]
fn predict_on_a_png_matches_the_dataset_path() {
    let Some(split) = mnist() else {
        eprintln!("skipped: set XENT_DATA to a folder holding mnist/ to run this test");
        return;
    };
    let small = Split { train: split.train.take(2000), test: split.test.take(10) };
    let config = TrainConfig {
        dataset: "mnist".into(),
        import: Default::default(),
        model: "linear".into(),
        epochs: 1,
        batch_size: 64,
        optimizer: OptimizerConfig::new(OptimizerKind::Adam),
        schedule: "constant".into(),
        label_smoothing: 0.0,
        seed: 0,
        threads: 1,
        augment: Default::default(),
        normalize: None,
        prefetch: true,
    };
    let mut trained = train::train(&small, &config, None, &mut ()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("model.safetensors");
    trained.model.save(&model_path).unwrap();

    // The dataset path: test images 0..3 through the normalised batch.
    let model = &mut trained.model;
    let (mut x, mut targets) = (Tensor::default(), Vec::new());
    data::fill_batch(&small.test, &[0, 1, 2], &model.info.normalize, &mut x, &mut targets).unwrap();
    let probs = loss::softmax(model.net.forward(&x, Mode::Eval).unwrap(), 1).unwrap();

    // The file path: the same images as PNG files, through the binary.
    let mut pngs = Vec::new();
    for i in 0..3 {
        let png = dir.path().join(format!("test{i}.png"));
        image::GrayImage::from_raw(28, 28, small.test.image(i).to_vec())
            .unwrap()
            .save(&png)
            .unwrap();
        pngs.push(png.to_str().unwrap().to_string());
    }
    let args = [&["predict", "--model", model_path.to_str().unwrap(), "--json"][..], &[]].concat();
    let out = Command::new(env!("CARGO_BIN_EXE_xent")).args(args).args(&pngs).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    for (i, line) in String::from_utf8(out.stdout).unwrap().lines().enumerate() {
        let prediction: Value = serde_json::from_str(line).unwrap();
        let row = probs.row(i);
        let got: Vec<f32> = prediction["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got, row, "image {i}: probabilities differ");
        assert_eq!(prediction["class"], xent::tensor::argmax(row));
    }
}
