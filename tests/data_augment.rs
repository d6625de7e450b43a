//! Augmentation of training batches and the background loader: crops and
//! flips move pixels exactly as torchvision's `RandomCrop(padding=pad)` and
//! `RandomHorizontalFlip` do, padding is normalised zero, each sample's draw
//! depends only on (seed, epoch, index), evaluation is never augmented, and
//! the prefetching loader gives the same run bit for bit.

use xent::data::{self, Augment, Batch, BatchPlan, Dataset, Loader, Normalize, Placement, Split};
use xent::io::Model;
use xent::optim::{OptimizerConfig, OptimizerKind};
use xent::train::{self, TrainConfig};
use xent::{Error, Tensor};

/// One 2-channel 3×3 image, pixel values `10·channel + 3·row + col + 1`
/// (so no pixel is 0, the padding value), full intensity 100.
fn tiny() -> Dataset {
    let images = (0..2).flat_map(|c| (0..9).map(move |p| 10 * c + p as u8 + 1)).collect();
    Dataset::new("tiny", images, vec![1], [2, 3, 3], data::numbered_classes(2), 100)
        .expect("valid dataset")
}

/// Normalisation that keeps the test values readable: `(v/100 − 0.5)/0.25`
/// on channel 0 and `(v/100 − 0.1)/0.5` on channel 1.
fn norm() -> Normalize {
    Normalize { mean: vec![0.5, 0.1], std: vec![0.25, 0.5] }
}

/// The expected batch of `tiny()` through `placement`, from the definition:
/// output `(r, col)` is the padded source `(r + dy, col' + dx)` with `col'`
/// mirrored when flipping; outside the image the source value is 0.
fn expected(placement: Placement) -> Vec<f32> {
    let ds = tiny();
    let n = norm();
    let mut want = Vec::new();
    for c in 0..2 {
        for r in 0..3isize {
            for col in 0..3isize {
                let col = if placement.flip { 2 - col } else { col };
                let (sr, sc) = (r + placement.dy, col + placement.dx);
                let inside = (0..3).contains(&sr) && (0..3).contains(&sc);
                let v = if inside { ds.image(0)[c * 9 + (sr * 3 + sc) as usize] } else { 0 };
                want.push((f32::from(v) / 100.0 - n.mean[c]) / n.std[c]);
            }
        }
    }
    want
}

/// The first sample index of a large range whose draw is `want`.
fn index_drawing(augment: Augment, seed: u64, epoch: usize, want: Placement) -> usize {
    (0..100_000)
        .find(|&i| augment.draw(seed, epoch, i) == want)
        .unwrap_or_else(|| panic!("no index draws {want:?}"))
}

/// `len` copies of `tiny()`, so that a sample of any index below `len` exists.
fn repeated(len: usize) -> Dataset {
    tiny().subset(&vec![0; len])
}

fn batch_of(plan: &BatchPlan<'_>, epoch: usize, indices: &[usize]) -> (Tensor, Vec<i64>) {
    let (mut x, mut targets) = (Tensor::default(), Vec::new());
    plan.fill(epoch, indices, &mut x, &mut targets).expect("valid batch");
    (x, targets)
}

#[test]
fn crop_moves_pixels_and_pads_with_normalised_zero() {
    // Every placement of crop:1 (and two of crop:2) against the definition,
    // with pixel values picked so a wrong source or a missed pad shows.
    let augment = Augment { crop_pad: 2, flip: false };
    let cases = [(-1, -1), (-1, 1), (1, 0), (0, 1), (1, 1), (-2, 2), (2, -1)];
    for (dy, dx) in cases {
        let want = Placement { dy, dx, flip: false };
        let index = index_drawing(augment, 11, 1, want);
        let ds = repeated(index + 1);
        let n = norm();
        let plan = BatchPlan {
            dataset: &ds,
            normalize: &n,
            augment,
            seed: 11,
            batch_size: 1,
            drop_last_single: false,
        };
        let (x, targets) = batch_of(&plan, 1, &[index]);
        assert_eq!(x.shape(), &[1, 2, 3, 3]);
        assert_eq!(targets, vec![1]);
        assert_eq!(x.data(), &expected(want)[..], "dy {dy} dx {dx}");
    }

    // By hand, dy = 1, dx = −1: rows 1..3 of the image shifted right by one,
    // a zero column on the left and a zero row at the bottom. Channel 0 pixels
    // are 1..=9, so the output holds 0 4 5 / 0 7 8 / 0 0 0 before normalising.
    let hand: Vec<f32> = [0u8, 4, 5, 0, 7, 8, 0, 0, 0]
        .iter()
        .map(|&v| (f32::from(v) / 100.0 - 0.5) / 0.25)
        .collect();
    assert_eq!(&expected(Placement { dy: 1, dx: -1, flip: false })[..9], &hand[..]);
    assert_eq!(hand[0], (0.0 - 0.5) / 0.25, "padding is (0 − mean) / std, not 0");
}

#[test]
fn flip_mirrors_rows_exactly() {
    let augment = Augment { crop_pad: 0, flip: true };
    let flipped = Placement { dy: 0, dx: 0, flip: true };
    let index = index_drawing(augment, 5, 2, flipped);
    let kept = index_drawing(augment, 5, 2, Placement::IDENTITY);
    let ds = repeated(index.max(kept) + 1);
    let n = norm();
    let plan = BatchPlan {
        dataset: &ds,
        normalize: &n,
        augment,
        seed: 5,
        batch_size: 2,
        drop_last_single: false,
    };
    let (x, _) = batch_of(&plan, 2, &[index, kept]);

    // The flipped sample is the kept one with every row reversed.
    let (got, plain) = (x.row(0), x.row(1));
    for row in 0..6 {
        let mirrored: Vec<f32> = plain[row * 3..row * 3 + 3].iter().rev().copied().collect();
        assert_eq!(&got[row * 3..row * 3 + 3], &mirrored[..], "row {row}");
    }
    assert_eq!(got, &expected(flipped)[..]);
    assert_eq!(plain, &expected(Placement::IDENTITY)[..]);

    // Crop then flip: the mirror of the cropped image, as torchvision's order.
    let both = Augment { crop_pad: 1, flip: true };
    let want = Placement { dy: 0, dx: 1, flip: true };
    let index = index_drawing(both, 5, 2, want);
    let ds = repeated(index + 1);
    let plan = BatchPlan {
        dataset: &ds,
        normalize: &n,
        augment: both,
        seed: 5,
        batch_size: 1,
        drop_last_single: false,
    };
    let (x, _) = batch_of(&plan, 2, &[index]);
    assert_eq!(x.data(), &expected(want)[..]);

    // By hand: channel 0 row 0 is 1 2 3; shifted by dx = 1 it is 2 3 0,
    // mirrored 0 3 2.
    let value = |v: f32| (v / 100.0 - 0.5) / 0.25;
    assert_eq!(&x.data()[..3], &[value(0.0), value(3.0), value(2.0)]);
}

#[test]
fn a_sample_draws_the_same_in_any_batch_and_on_any_thread() {
    let split = data::load("digits").expect("digits need no files");
    let ds = &split.train;
    let n = Normalize::measure(ds);
    let augment = Augment { crop_pad: 2, flip: true };
    let plan = BatchPlan {
        dataset: ds,
        normalize: &n,
        augment,
        seed: 3,
        batch_size: 4,
        drop_last_single: false,
    };

    // Sample 5 at the front of one batch and at the back of another.
    let (a, _) = batch_of(&plan, 4, &[5, 1, 2]);
    let (b, _) = batch_of(&plan, 4, &[7, 9, 11, 5]);
    assert_eq!(a.row(0), b.row(3));

    // The same batch built inside a pool of 1 and of 3 threads, and on a
    // thread of its own.
    let in_pool = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| batch_of(&plan, 4, &[5, 1, 2]).0)
    };
    assert_eq!(in_pool(1), a);
    assert_eq!(in_pool(3), a);
    let on_thread = std::thread::scope(|s| s.spawn(|| batch_of(&plan, 4, &[5, 1, 2]).0).join());
    assert_eq!(on_thread.unwrap(), a);

    // The augmentation really acts: without it the sample differs.
    let plain = BatchPlan { augment: Augment::NONE, ..plan };
    let changed = (0..20).filter(|&i| batch_of(&plain, 4, &[i]).0 != batch_of(&plan, 4, &[i]).0);
    assert!(changed.count() >= 15, "crop:2,flip changes almost every sample");
}

#[test]
fn different_epochs_and_seeds_draw_differently() {
    let augment = Augment { crop_pad: 4, flip: true };
    let draws = |seed, epoch| (0..200).map(|i| augment.draw(seed, epoch, i)).collect::<Vec<_>>();
    let first = draws(0, 1);
    assert_eq!(first, draws(0, 1));
    for other in [draws(0, 2), draws(1, 1)] {
        let same = first.iter().zip(&other).filter(|(a, b)| a == b).count();
        // 81 offsets × 2 sides: a repeat is a 1-in-162 event per sample.
        assert!(same < 10, "{same} of 200 draws repeat");
    }

    // And so do whole batches of the same samples.
    let split = data::load("digits").expect("digits need no files");
    let n = Normalize::measure(&split.train);
    let plan = BatchPlan {
        dataset: &split.train,
        normalize: &n,
        augment,
        seed: 0,
        batch_size: 8,
        drop_last_single: false,
    };
    let indices: Vec<usize> = (0..8).collect();
    assert_ne!(batch_of(&plan, 1, &indices).0, batch_of(&plan, 2, &indices).0);
    assert_eq!(batch_of(&plan, 1, &indices).0, batch_of(&plan, 1, &indices).0);
}

/// The batches a loader yields, copied out.
fn drain(mut loader: Loader<'_>) -> Vec<Batch> {
    let mut batches = Vec::new();
    while let Some(batch) = loader.next() {
        batches.push(batch.expect("valid batch").clone());
    }
    batches
}

#[test]
fn background_loader_yields_the_inline_batches() {
    let split = data::load("digits").expect("digits need no files");
    let ds = split.train.take(300);
    let n = Normalize::measure(&ds);
    let augment = Augment { crop_pad: 1, flip: true };
    let plan = BatchPlan {
        dataset: &ds,
        normalize: &n,
        augment,
        seed: 9,
        batch_size: 64,
        drop_last_single: false,
    };

    let inline = drain(Loader::inline(plan, 2..=4).unwrap());
    let background = std::thread::scope(|s| drain(Loader::spawn(s, plan, 2..=4).unwrap()));

    // 300 = 4 · 64 + 44: five steps per epoch, epochs 2, 3 and 4.
    assert_eq!(inline.len(), 15);
    let positions: Vec<(usize, usize)> = inline.iter().map(|b| (b.epoch, b.step)).collect();
    let want: Vec<(usize, usize)> = (2..=4).flat_map(|e| (1..=5).map(move |s| (e, s))).collect();
    assert_eq!(positions, want);
    assert_eq!(inline[4].targets.len(), 44);
    for (a, b) in inline.iter().zip(&background) {
        assert_eq!((a.epoch, a.step, &a.targets), (b.epoch, b.step, &b.targets));
        assert_eq!(a.x, b.x, "epoch {} step {}", a.epoch, a.step);
    }
    assert_eq!(background.len(), inline.len());

    // Each epoch is its seeded order, batch by batch, through `fill`.
    let order = data::epoch_order(ds.len(), 9, 3);
    let (x, targets) = batch_of(&plan, 3, &order[64..128]);
    assert_eq!((&inline[6].x, &inline[6].targets), (&x, &targets));
}

#[test]
fn loader_errors_surface_and_end_the_run() {
    let ds = tiny();
    let wrong = Normalize::identity(3);
    let plan = BatchPlan {
        dataset: &ds,
        normalize: &wrong,
        augment: Augment::NONE,
        seed: 0,
        batch_size: 1,
        drop_last_single: false,
    };
    std::thread::scope(|s| {
        let mut loader = Loader::spawn(s, plan, 1..=3).unwrap();
        let err = loader.next().expect("a result").expect_err("three channels for two");
        assert!(err.to_string().contains("3 means and 3 stds"), "{err}");
        assert!(loader.next().is_none(), "nothing after an error");
    });
    assert!(Loader::inline(BatchPlan { batch_size: 0, ..plan }, 1..=1).is_err());

    // Dropping a loader half-way stops its thread (the scope would hang otherwise).
    let n = norm();
    let ds = repeated(10);
    let plan = BatchPlan { normalize: &n, dataset: &ds, ..plan };
    std::thread::scope(|s| {
        let mut loader = Loader::spawn(s, plan, 1..=100).unwrap();
        assert!(loader.next().unwrap().is_ok());
    });
}

fn config(augment: &str, prefetch: bool) -> TrainConfig {
    TrainConfig {
        dataset: "digits".into(),
        import: Default::default(),
        model: "conv(4,3,pad=1)-relu-maxpool(2)-flatten-linear".into(),
        epochs: 2,
        batch_size: 32,
        optimizer: OptimizerConfig { lr: 2e-3, ..OptimizerConfig::new(OptimizerKind::Adam) },
        schedule: "cosine".into(),
        label_smoothing: 0.0,
        seed: 7,
        threads: 2,
        augment: augment.parse().unwrap(),
        normalize: None,
        prefetch,
    }
}

fn small_digits() -> Split {
    let split = data::load("digits").expect("digits need no files");
    Split { train: split.train.take(256), test: split.test.take(64) }
}

fn weights(model: &Model) -> Vec<f32> {
    model.net.params().flat_map(|p| p.value.data().to_vec()).collect()
}

#[test]
fn prefetching_trains_bit_identical_weights() {
    let split = small_digits();
    for augment in ["none", "crop:2,flip"] {
        let inline = train::train(&split, &config(augment, false), None, &mut ()).unwrap();
        let prefetched = train::train(&split, &config(augment, true), None, &mut ()).unwrap();
        assert_eq!(weights(&inline.model), weights(&prefetched.model), "{augment}");
        let losses =
            |t: &train::Trained| t.history.iter().map(|m| m.train_loss).collect::<Vec<_>>();
        assert_eq!(losses(&inline), losses(&prefetched), "{augment}");
    }

    // Augmentation changes the run; the seed fixes it.
    let plain = train::train(&split, &config("none", true), None, &mut ()).unwrap();
    let augmented = train::train(&split, &config("crop:2,flip", true), None, &mut ()).unwrap();
    assert_ne!(weights(&plain.model), weights(&augmented.model));
}

#[test]
fn evaluation_is_never_augmented() {
    let split = small_digits();
    let mut trained = train::train(&split, &config("crop:2,flip", true), None, &mut ()).unwrap();

    // The test metrics of the last epoch are those of plain evaluation, whose
    // batches are the images as they are.
    let last = trained.history.last().unwrap().clone();
    let eval = train::evaluate(&mut trained.model, &split.test).unwrap();
    assert_eq!(last.test_loss, eval.tally.mean_loss());
    assert_eq!(last.test_accuracy, eval.tally.accuracy());

    let indices: Vec<usize> = (0..split.test.len()).collect();
    let (mut x, mut targets) = (Tensor::default(), Vec::new());
    data::fill_batch(&split.test, &indices, &trained.model.info.normalize, &mut x, &mut targets)
        .unwrap();
    let n = &trained.model.info.normalize;
    let plain = BatchPlan {
        dataset: &split.test,
        normalize: n,
        augment: Augment::NONE,
        seed: 7,
        batch_size: 1,
        drop_last_single: false,
    };
    assert_eq!(batch_of(&plain, 2, &indices).0, x);
}

#[test]
fn given_statistics_are_checked_and_stored() {
    let split = small_digits();
    let mut cfg = config("flip", true);
    cfg.epochs = 1;
    cfg.normalize = Some(Normalize { mean: vec![0.3], std: vec![0.4] });
    let trained = train::train(&split, &cfg, None, &mut ()).unwrap();
    assert_eq!(trained.model.info.normalize, Normalize { mean: vec![0.3], std: vec![0.4] });
    assert_eq!(trained.model.info.training["config"]["augment"], "flip");

    // Bad statistics: refused before training, naming the option.
    for (mean, std, part) in [
        (vec![0.3, 0.3], vec![0.4, 0.4], "give 2 channel(s), dataset digits has 1"),
        (vec![0.3], vec![0.0], "--std values must be finite and above 0, found 0"),
        (vec![0.3], vec![], "found 1 and 0"),
    ] {
        cfg.normalize = Some(Normalize { mean, std });
        let err = train::train(&split, &cfg, None, &mut ()).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)) && err.to_string().contains(part),
            "{err}"
        );
    }
}

#[test]
fn cli_records_augmentation_and_statistics_in_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let xent = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_xent"))
            .args(["train", "--model", "linear", "--epochs", "1", "--threads", "1", "--quiet"])
            .args(["--out", out.to_str().unwrap(), "--force"])
            .args(extra)
            .output()
            .unwrap()
    };
    let run = xent(&["--augment", "crop:1,flip", "--mean", "0.3", "--std", "0.4"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let text = std::fs::read_to_string(out.join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["augment"], "crop:1,flip");
    assert_eq!(config["normalize"], serde_json::json!({ "mean": [0.3], "std": [0.4] }));
    assert_eq!(config["prefetch"], true);

    // A bad list is a usage error naming the part; --mean needs --std.
    let bad = xent(&["--augment", "crop:4,rotate"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown transform \"rotate\""));
    assert_eq!(xent(&["--mean", "0.5"]).status.code(), Some(2));
}
