//! Model files: the weights as safetensors, named as PyTorch's `state_dict` of
//! the equivalent `nn.Sequential` (`0.weight`, `0.bias`, …; buffers such as
//! `1.running_mean` too, `num_batches_tracked` as a scalar `i64`), and metadata that
//! makes the file alone enough to predict: the spec, input shape, class
//! names, pixel scale and normalisation, and a training summary.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

mod image;

pub use self::image::{read_image, RESIZE_FILTER};

use crate::data::{self, Dataset, LoadOptions, Normalize};
use crate::loss;
use crate::nn::{Buffer, Mode, ModelSpec, Sequential};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Value of the `format` metadata key; bumped when the layout changes.
pub const FORMAT: &str = "xent-model/1";

/// Everything about a model except its weights.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    /// The architecture in spec syntax, every size explicit.
    pub spec: String,
    /// Shape of one input sample, `[c, h, w]`.
    pub input_shape: Vec<usize>,
    /// Class names, index = class.
    pub classes: Vec<String>,
    /// Pixel value that means full intensity in the training data (255, or 16
    /// for the 8×8 digits); pixels are divided by it before normalising.
    pub pixel_max: f32,
    /// Per-channel mean and standard deviation of the scaled pixels.
    pub normalize: Normalize,
    /// Name of the training dataset.
    pub dataset: String,
    /// How the training dataset was imported (held-out fraction and seed,
    /// CIFAR-100 labels, an image folder's channels and size).
    pub import: LoadOptions,
    /// Training summary (epochs, accuracy, …); free-form.
    pub training: serde_json::Value,
}

/// A network together with what is needed to feed it.
#[derive(Debug)]
pub struct Model {
    /// The network.
    pub net: Sequential,
    /// Its metadata.
    pub info: ModelInfo,
}

impl Model {
    /// Writes the model to `path` atomically: a temporary file next to it is
    /// renamed into place, so an interrupted save never leaves half a model.
    /// Parameters and buffers are written, under their `state_dict` names.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        // Every tensor as (name, dtype, little-endian bytes, shape).
        let f32_bytes = |t: &Tensor| t.data().iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut bytes: Vec<(String, Dtype, Vec<u8>, Vec<usize>)> = Vec::new();
        for (name, p) in self.net.named_params() {
            bytes.push((name, Dtype::F32, f32_bytes(&p.value), p.value.shape().to_vec()));
        }
        for (name, buffer) in self.net.named_buffers() {
            let (dtype, raw) = match buffer {
                Buffer::F32(value) => (Dtype::F32, f32_bytes(value)),
                Buffer::I64(count) => (Dtype::I64, count.to_le_bytes().to_vec()),
            };
            bytes.push((name, dtype, raw, buffer.shape().to_vec()));
        }
        let views = bytes.iter().map(|(name, dtype, raw, shape)| {
            let view = TensorView::new(*dtype, shape.clone(), raw)
                .expect("byte length is the element size × the element count");
            (name.clone(), view)
        });
        let metadata = self.metadata();
        let buffer = safetensors::serialize(views, Some(metadata))
            .map_err(|e| Error::ModelFile { path: path.into(), detail: e.to_string() })?;

        let tmp = path.with_extension("safetensors.tmp");
        std::fs::write(&tmp, buffer).map_err(|e| Error::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("writing", path, e))
    }

    fn metadata(&self) -> HashMap<String, String> {
        let info = &self.info;
        HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("spec".to_string(), info.spec.clone()),
            ("input_shape".to_string(), json(&info.input_shape)),
            ("classes".to_string(), json(&info.classes)),
            ("pixel_max".to_string(), info.pixel_max.to_string()),
            ("normalize".to_string(), json(&info.normalize)),
            ("dataset".to_string(), info.dataset.clone()),
            ("import".to_string(), json(&info.import)),
            ("training".to_string(), info.training.to_string()),
        ])
    }

    /// Reads a model written by [`Model::save`]. `path` may also be a run
    /// folder, meaning its `model.safetensors`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be read, [`Error::ModelFile`] when it
    /// is not an xent model or its tensors do not fit its spec.
    pub fn load(path: &Path) -> Result<Model> {
        let in_folder = path.join("model.safetensors");
        let path = if path.is_dir() { in_folder.as_path() } else { path };
        let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
        let bad = |detail: String| Error::ModelFile { path: path.into(), detail };
        let not_safetensors = |e| bad(format!("not a safetensors file, or cut short ({e})"));
        let tensors = SafeTensors::deserialize(&bytes).map_err(not_safetensors)?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(not_safetensors)?;
        let meta = header.metadata().clone().unwrap_or_default();
        let info = parse_info(&meta).map_err(bad)?;

        // Rebuild the architecture, then overwrite its fresh weights.
        let inconsistent = |e: Error| bad(format!("its metadata does not fit together: {e}"));
        let spec = ModelSpec::parse(&info.spec).map_err(inconsistent)?;
        let mut net = spec
            .build(&info.input_shape, info.classes.len(), &mut Rng::new(0, 0))
            .map_err(inconsistent)?;
        for (name, param) in net.named_params_mut() {
            let view =
                tensors.tensor(&name).map_err(|_| bad(format!("tensor {name} is missing")))?;
            if view.dtype() != Dtype::F32 || view.shape() != param.value.shape() {
                return Err(bad(format!(
                    "tensor {name}: expected f32 {:?}, found {:?} {:?}",
                    param.value.shape(),
                    view.dtype(),
                    view.shape()
                )));
            }
            read_f32(view.data(), param.value.data_mut());
        }
        for (name, buffer) in net.named_buffers_mut() {
            let view =
                tensors.tensor(&name).map_err(|_| bad(format!("tensor {name} is missing")))?;
            let shape = buffer.shape().to_vec();
            let wrong = |want: &str| {
                bad(format!(
                    "tensor {name}: expected {want} {shape:?}, found {:?} {:?}",
                    view.dtype(),
                    view.shape()
                ))
            };
            match buffer {
                Buffer::F32(value) => {
                    if view.dtype() != Dtype::F32 || view.shape() != value.shape() {
                        return Err(wrong("f32"));
                    }
                    read_f32(view.data(), value.data_mut());
                }
                Buffer::I64(count) => {
                    if view.dtype() != Dtype::I64 || !view.shape().is_empty() {
                        return Err(wrong("i64"));
                    }
                    *count = i64::from_le_bytes(view.data().try_into().expect("one i64"));
                }
            }
        }
        Ok(Model { net, info })
    }
}

/// Little-endian `f32`s from `bytes` into `dst` (lengths checked by the caller).
fn read_f32(bytes: &[u8], dst: &mut [f32]) {
    dst.iter_mut().zip(bytes.chunks_exact(4)).for_each(|(d, b)| {
        *d = f32::from_le_bytes(b.try_into().expect("chunks of 4"));
    });
}

fn parse_info(meta: &HashMap<String, String>) -> std::result::Result<ModelInfo, String> {
    let get = |key: &str| meta.get(key).ok_or_else(|| format!("metadata key {key:?} is missing"));
    match get("format") {
        Ok(f) if f == FORMAT => {}
        Ok(f) => return Err(format!("format {f:?}, expected {FORMAT:?}")),
        Err(_) => return Err("no xent metadata; was this file written by xent?".into()),
    }
    let json = |key: &str| -> std::result::Result<serde_json::Value, String> {
        serde_json::from_str(get(key)?).map_err(|e| format!("metadata {key:?}: {e}"))
    };
    let info = serde_json::json!({
        "spec": get("spec")?,
        "input_shape": json("input_shape")?,
        "classes": json("classes")?,
        "pixel_max": json("pixel_max")?,
        "normalize": json("normalize")?,
        "dataset": get("dataset")?,
        "import": json("import")?,
        "training": json("training")?,
    });
    let info: ModelInfo = serde_json::from_value(info).map_err(|e| format!("metadata: {e}"))?;

    // Values that would silently change every prediction.
    if !(info.pixel_max.is_finite() && info.pixel_max > 0.0) {
        return Err(format!("metadata pixel_max must be above 0, found {}", info.pixel_max));
    }
    let Normalize { mean, std } = &info.normalize;
    let channels = info.input_shape.first().copied().unwrap_or(0);
    if mean.len() != channels || std.len() != channels {
        return Err(format!(
            "metadata normalize has {} mean(s) and {} std(s) for {channels} input channel(s)",
            mean.len(),
            std.len()
        ));
    }
    if mean.iter().chain(std).any(|v| !v.is_finite()) || std.iter().any(|&s| s <= 0.0) {
        return Err("metadata normalize needs finite means and stds above 0".into());
    }
    Ok(info)
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("metadata values are plain data")
}

/// Class probabilities for each image file, in the order given.
///
/// Pixels are scaled by 255 (the range of PNG and JPEG) and normalised with
/// the model's statistics, exactly as a dataset batch is.
///
/// # Errors
///
/// As [`read_image`], for the first file that fails.
pub fn predict_files(model: &mut Model, paths: &[std::path::PathBuf]) -> Result<Vec<Vec<f32>>> {
    let shape = model.info.input_shape.clone();
    let mut pixels = Vec::new();
    for path in paths {
        pixels.extend(read_image(path, &shape)?);
    }
    let &[c, h, w] = &shape[..] else {
        return Err(Error::arg(format!("model input {shape:?} is not [c, h, w]")));
    };
    let classes = model.info.classes.clone();
    let images = Dataset::new("images", pixels, vec![0; paths.len()], [c, h, w], classes, 255)?;
    let indices: Vec<usize> = (0..paths.len()).collect();
    let (mut x, mut targets) = (Tensor::default(), Vec::new());
    data::fill_batch(&images, &indices, &model.info.normalize, &mut x, &mut targets)?;
    let logits = model.net.forward(&x, Mode::Eval)?;
    let probs = loss::softmax(logits, 1)?;
    Ok(probs.data().chunks(probs.row_width()).map(<[f32]>::to_vec).collect())
}
