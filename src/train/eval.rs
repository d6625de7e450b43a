//! Evaluation of a model on a dataset: loss, top-1 and top-5 accuracy and
//! the confusion matrix, in inference mode (nothing cached for backward).

use std::collections::HashMap;
use std::time::Instant;

use crate::data::{self, Dataset};
use crate::io::{Model, ModelInfo};
use crate::loss;
use crate::nn::Mode;
use crate::tensor::Tensor;
use crate::{Error, Result};

use super::Tally;

/// Images per forward pass during evaluation; larger than a training batch
/// because nothing is kept for backward.
const EVAL_BATCH: usize = 500;

/// The outcome of [`evaluate`].
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Counts, loss and confusion matrix, in the model's classes.
    pub tally: Tally,
    /// The model's classes that no sample of the dataset has.
    pub absent: Vec<String>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Runs `model` over all of `dataset`, each label counted as the model's
/// class of the same name (see [`class_map`]).
///
/// # Errors
///
/// [`Error::InvalidArgument`] when a sample's class is not one of the
/// model's, or the dataset's samples do not have the model's input shape.
pub fn evaluate(model: &mut Model, dataset: &Dataset) -> Result<Evaluation> {
    let started = Instant::now();
    let map = class_map(dataset, &model.info)?;
    let info = &model.info;
    if dataset.sample_shape()[..] != info.input_shape[..] {
        return Err(Error::arg(format!(
            "dataset {} has images of shape {:?}, the model takes {:?} (it was trained on {})",
            dataset.name(),
            dataset.sample_shape(),
            info.input_shape,
            info.dataset
        )));
    }

    // Batches in file order; per-sample loss is logsumexp(z) − z[label].
    let mut tally = Tally::new(info.classes.len());
    let (mut x, mut targets) = (Tensor::default(), Vec::new());
    let order: Vec<usize> = (0..dataset.len()).collect();
    for batch in order.chunks(EVAL_BATCH) {
        data::fill_batch(dataset, batch, &info.normalize, &mut x, &mut targets)?;
        let logits = model.net.forward(&x, Mode::Eval)?;
        for (row, &label) in targets.iter().enumerate() {
            let label = map.to_model[label as usize].expect("every label in use has a class");
            let scores = logits.row(row);
            tally.loss_sum += loss::logsumexp(scores) - f64::from(scores[label as usize]);
            tally.add(scores, label as usize);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Evaluation { tally, absent: map.absent, seconds })
}

/// How the labels of a dataset index the classes of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassMap {
    /// `to_model[k]`: the model's class of the dataset's class `k`; `None`
    /// for a class no sample has.
    pub to_model: Vec<Option<u32>>,
    /// The model's classes that no sample has, in the model's order.
    pub absent: Vec<String>,
}

/// Matches the classes of `dataset` to those of the model by name, since
/// two datasets may list the same classes in another order or list only
/// some of them (a folder's classes are its sub-folders, sorted). Classes
/// named by their index (`"0"`, `"1"`, … as in IDX and CSV files) match
/// the model's class of that index when it too names its classes so.
///
/// # Errors
///
/// [`Error::InvalidArgument`] naming the classes of the dataset's samples
/// that the model lacks, with the model's classes (and the input shapes,
/// when they differ too).
pub fn class_map(dataset: &Dataset, info: &ModelInfo) -> Result<ClassMap> {
    let index: HashMap<&str, u32> =
        info.classes.iter().enumerate().map(|(i, name)| (name.as_str(), i as u32)).collect();
    let counts = dataset.class_counts();
    let mut to_model = vec![None; counts.len()];
    let mut unknown = Vec::new();
    for (k, (name, &count)) in dataset.classes().iter().zip(&counts).enumerate() {
        // A class no sample has (an IDX file's unused digit) needs no match.
        if count == 0 {
            continue;
        }
        match index.get(name.as_str()) {
            Some(&i) => to_model[k] = Some(i),
            None => unknown.push((name.as_str(), count)),
        }
    }
    if !unknown.is_empty() {
        return Err(unknown_classes(dataset, info, &unknown));
    }
    let mut used = vec![false; info.classes.len()];
    to_model.iter().flatten().for_each(|&i| used[i as usize] = true);
    let absent =
        info.classes.iter().zip(used).filter(|(_, used)| !used).map(|(c, _)| c.clone()).collect();
    Ok(ClassMap { to_model, absent })
}

/// Names shown in a list before the rest are counted.
const NAMES_SHOWN: usize = 20;

/// The error for classes of `dataset` the model does not know.
fn unknown_classes(dataset: &Dataset, info: &ModelInfo, unknown: &[(&str, usize)]) -> Error {
    let images: usize = unknown.iter().map(|(_, n)| n).sum();
    let names: Vec<&str> = unknown.iter().map(|(name, _)| *name).collect();
    let (one, many) = if is_numbered(dataset.classes()) && is_numbered(&info.classes) {
        ("label", "labels")
    } else {
        ("class", "classes")
    };
    let kind = if names.len() == 1 { one } else { many };
    let verb = if names.len() == 1 { "is" } else { "are" };
    let model = if is_numbered(&info.classes) && !info.classes.is_empty() {
        format!("0..{}", info.classes.len() - 1)
    } else {
        shown(&info.classes.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let mut detail = format!(
        "dataset {}: {kind} {} ({images} image{}) {verb} not among the model's {} classes \
         ({model}, from {})",
        dataset.name(),
        shown(&names),
        if images == 1 { "" } else { "s" },
        info.classes.len(),
        info.dataset
    );
    if dataset.sample_shape()[..] != info.input_shape[..] {
        detail += &format!(
            "; its images are {:?}, the model takes {:?}",
            dataset.sample_shape(),
            info.input_shape
        );
    }
    Error::arg(detail)
}

/// Whether every class is named by its index, as `"0"`, `"1"`, ….
fn is_numbered(classes: &[String]) -> bool {
    classes.iter().enumerate().all(|(i, name)| *name == i.to_string())
}

/// The first [`NAMES_SHOWN`] names, comma-separated, then how many more.
fn shown(names: &[&str]) -> String {
    let mut text = names.iter().take(NAMES_SHOWN).copied().collect::<Vec<_>>().join(", ");
    if names.len() > NAMES_SHOWN {
        text += &format!(" and {} more", names.len() - NAMES_SHOWN);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{numbered_classes, LoadOptions, Normalize};

    fn info(classes: &[&str]) -> ModelInfo {
        ModelInfo {
            spec: "flatten-linear".into(),
            input_shape: vec![1, 1, 1],
            classes: classes.iter().map(|c| c.to_string()).collect(),
            pixel_max: 255.0,
            normalize: Normalize { mean: vec![0.0], std: vec![1.0] },
            dataset: "pets".into(),
            import: LoadOptions::default(),
            training: serde_json::Value::Null,
        }
    }

    fn dataset(classes: &[&str], labels: Vec<u32>) -> Dataset {
        let classes = classes.iter().map(|c| c.to_string()).collect();
        Dataset::new("other", vec![0; labels.len()], labels, [1, 1, 1], classes, 255)
            .expect("valid dataset")
    }

    #[test]
    fn classes_match_by_name_not_position() {
        let map =
            class_map(&dataset(&["dog", "ship"], vec![0, 1, 1]), &info(&["cat", "dog", "ship"]))
                .expect("known classes");
        assert_eq!(map.to_model, [Some(1), Some(2)]);
        assert_eq!(map.absent, ["cat"]);

        // A class without samples needs no counterpart.
        let map = class_map(&dataset(&["ant", "dog"], vec![1]), &info(&["cat", "dog"]))
            .expect("only dog is used");
        assert_eq!(map.to_model, [None, Some(1)]);
    }

    #[test]
    fn an_unknown_class_is_named_with_the_models_classes() {
        let err = class_map(
            &dataset(&["aship", "cat", "dog"], vec![0, 1, 2]),
            &info(&["cat", "dog", "ship"]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("class aship (1 image) is not among the model's 3 classes"), "{err}");
        assert!(err.contains("(cat, dog, ship, from pets)"), "{err}");

        let digits = info(&numbered_classes(10).iter().map(String::as_str).collect::<Vec<_>>());
        let numbered: Vec<String> = numbered_classes(13);
        let names: Vec<&str> = numbered.iter().map(String::as_str).collect();
        let err = class_map(&dataset(&names, vec![3, 11, 12, 12]), &digits).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains(
                "labels 11, 12 (3 images) are not among the model's 10 classes (0..9, from pets)"
            ),
            "{err}"
        );
    }
}
