//! Evaluation of a model on a dataset: loss, top-1 and top-5 accuracy and
//! the confusion matrix, in inference mode (nothing cached for backward).

use std::time::Instant;

use crate::data::{self, Dataset};
use crate::io::Model;
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
    /// Counts, loss and confusion matrix.
    pub tally: Tally,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Runs `model` over all of `dataset`.
///
/// # Errors
///
/// [`Error::InvalidArgument`] when the dataset's samples do not have the
/// model's input shape or it has more classes than the model.
pub fn evaluate(model: &mut Model, dataset: &Dataset) -> Result<Evaluation> {
    let started = Instant::now();
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
    let classes = info.classes.len();
    if dataset.classes().len() > classes {
        return Err(Error::arg(format!(
            "dataset {} has {} classes, the model knows {classes}",
            dataset.name(),
            dataset.classes().len()
        )));
    }

    // Batches in file order; per-sample loss is logsumexp(z) − z[label].
    let mut tally = Tally::new(classes);
    let (mut x, mut targets) = (Tensor::default(), Vec::new());
    let order: Vec<usize> = (0..dataset.len()).collect();
    for batch in order.chunks(EVAL_BATCH) {
        data::fill_batch(dataset, batch, &info.normalize, &mut x, &mut targets)?;
        let logits = model.net.forward(&x, Mode::Eval)?;
        for (row, &label) in targets.iter().enumerate() {
            let scores = logits.row(row);
            tally.loss_sum += loss::logsumexp(scores) - f64::from(scores[label as usize]);
            tally.add(scores, label as usize);
        }
    }
    Ok(Evaluation { tally, seconds: started.elapsed().as_secs_f64() })
}
