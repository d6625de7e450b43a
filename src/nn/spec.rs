//! Model specs: a compact text for a stack of layers, and the named presets.
//!
//! Layers are joined by `-`; arguments go in parentheses, positional first,
//! then `key=value`. A size `AxB` gives height and width separately.
//!
//! | layer | form | PyTorch |
//! |---|---|---|
//! | linear | `linear(OUT[,bias=false])`; bare `linear` outputs one score per class | `nn.Linear` |
//! | conv | `conv(OUT,K[,stride=S][,pad=P][,groups=G][,bias=false])` | `nn.Conv2d` |
//! | maxpool | `maxpool(K[,stride=S][,pad=P])`; stride defaults to K | `nn.MaxPool2d` |
//! | relu | `relu` | `nn.ReLU` |
//! | flatten | `flatten` | `nn.Flatten` |
//! | bn | `bn[(eps=E,momentum=M,affine=false)]` | `nn.BatchNorm2d` / `nn.BatchNorm1d` |
//!
//! `bn` is `BatchNorm2d` on a `[c, h, w]` input (after a conv) and `BatchNorm1d` on
//! `[features]` (after a linear); eps, momentum and affine default to 1e-5, 0.1
//! and true, as in PyTorch.
//!
//! Example: `conv(16,5,pad=2)-bn-relu-maxpool(2)-flatten-linear`.

use super::{BatchNorm, BatchNormConfig, Conv2dConfig};
use super::{Conv2d, Flatten, Layer, Linear, MaxPool2d, Relu, Sequential};
use crate::rng::Rng;
use crate::{Error, Result};

/// The named models and their specs.
pub const PRESETS: &[(&str, &str)] = &[
    // Softmax regression: one linear score per class.
    ("linear", "flatten-linear"),
    ("mlp", "flatten-linear(512)-relu-linear(256)-relu-linear"),
    (
        "lenet",
        "conv(6,5,pad=2)-relu-maxpool(2)-conv(16,5)-relu-maxpool(2)-flatten\
         -linear(120)-relu-linear(84)-relu-linear",
    ),
    // LeNet with batch normalisation after each convolution: the fast MNIST
    // recipe (two epochs to 99%).
    (
        "lenet-bn",
        "conv(6,5,pad=2)-bn-relu-maxpool(2)-conv(16,5)-bn-relu-maxpool(2)-flatten\
         -linear(120)-relu-linear(84)-relu-linear",
    ),
    // Three 3×3 convolutions with batch normalisation, doubling the channels
    // as pooling halves the size: for 32×32 colour images (CIFAR-10).
    (
        "convnet",
        "conv(32,3,pad=1)-bn-relu-maxpool(2)-conv(64,3,pad=1)-bn-relu-maxpool(2)\
         -conv(128,3,pad=1)-bn-relu-maxpool(2)-flatten-linear",
    ),
];

/// One layer of a spec, before it is sized to an input.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerSpec {
    /// Fully connected; `out: None` means one output per class.
    Linear {
        /// Output features.
        out: Option<usize>,
        /// Whether it has a bias.
        bias: bool,
    },
    /// 2-D convolution.
    Conv {
        /// Output channels.
        out: usize,
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`.
        stride: [usize; 2],
        /// `[ph, pw]`.
        pad: [usize; 2],
        /// Channel groups.
        groups: usize,
        /// Whether it has a bias.
        bias: bool,
    },
    /// 2-D max-pooling.
    MaxPool {
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`.
        stride: [usize; 2],
        /// `[ph, pw]`.
        pad: [usize; 2],
    },
    /// ReLU.
    Relu,
    /// Flatten all but the batch dimension.
    Flatten,
    /// Batch normalisation over channels (`[c, h, w]`) or features
    /// (`[features]`), whichever the input is.
    BatchNorm {
        /// Added to the variance.
        eps: f64,
        /// Weight of the new batch in the running statistics.
        momentum: f64,
        /// Whether it has a learned weight and bias.
        affine: bool,
    },
}

/// A parsed model spec.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The text it was parsed from (a preset name is replaced by its spec).
    pub text: String,
    /// The layers, first to last.
    pub layers: Vec<LayerSpec>,
}

impl ModelSpec {
    /// Parses a preset name or a spec.
    ///
    /// # Errors
    ///
    /// [`Error::Spec`] naming the layer that does not parse.
    pub fn parse(text: &str) -> Result<ModelSpec> {
        let text = PRESETS.iter().find(|(name, _)| *name == text).map_or(text, |(_, spec)| spec);
        let fail = |detail: String| Error::Spec { spec: text.to_string(), detail };
        let mut layers = Vec::new();
        for token in split_layers(text).map_err(fail)? {
            layers.push(parse_layer(token).map_err(fail)?);
        }
        if layers.is_empty() {
            return Err(fail(format!("no layers; presets are {}", preset_names())));
        }
        Ok(ModelSpec { text: text.to_string(), layers })
    }

    /// Whether the model has a batch-norm layer, which cannot train on a
    /// batch of one sample.
    pub fn has_batch_norm(&self) -> bool {
        self.layers.iter().any(|layer| matches!(layer, LayerSpec::BatchNorm { .. }))
    }

    /// Builds the network for samples of `input_shape` (`[c, h, w]`) and
    /// `classes` outputs, drawing initial weights from `rng`.
    ///
    /// # Errors
    ///
    /// [`Error::Spec`] when a layer does not fit the shape it receives, or the
    /// last layer does not produce one score per class.
    pub fn build(
        &self,
        input_shape: &[usize],
        classes: usize,
        rng: &mut Rng,
    ) -> Result<Sequential> {
        let fail = |detail: String| Error::Spec { spec: self.text.clone(), detail };
        let mut shape = [&[1][..], input_shape].concat();
        let mut layers: Vec<Box<dyn Layer>> = Vec::new();
        let mut params = 0usize;
        for (i, spec) in self.layers.iter().enumerate() {
            let is_last = i + 1 == self.layers.len();

            // Refuse a model too big to allocate before allocating it.
            params = params.saturating_add(param_count(spec, &shape[1..], classes));
            if params > MAX_PARAMS {
                return Err(fail(format!(
                    "{params} parameters by layer {} ({:.1} GiB of f32); the limit is {MAX_PARAMS}",
                    i + 1,
                    params as f64 * 4.0 / f64::from(1u32 << 30)
                )));
            }
            let layer = build_layer(spec, &shape[1..], classes, is_last, rng).map_err(fail)?;
            shape = layer.output_shape(&shape);
            layers.push(layer);
        }
        if shape[1..] != [classes] {
            return Err(fail(format!(
                "the last layer must give {classes} class scores per sample, it gives {:?}; \
                 end the spec with `linear`",
                &shape[1..]
            )));
        }
        Ok(Sequential::new(input_shape, layers))
    }
}

/// The most parameters a model may have: 2³⁰ values, 4 GiB of weights and as
/// much again for their gradients.
pub const MAX_PARAMS: usize = 1 << 30;

/// Parameters `spec` would have on an input of `shape` (0 where the shape
/// does not fit; building reports that).
fn param_count(spec: &LayerSpec, shape: &[usize], classes: usize) -> usize {
    match *spec {
        LayerSpec::Linear { out, bias } => {
            let out = out.unwrap_or(classes);
            let features: usize = shape.iter().product();
            features.saturating_mul(out).saturating_add(if bias { out } else { 0 })
        }
        LayerSpec::Conv { out, kernel, groups, bias, .. } => {
            let per_out =
                (shape.first().copied().unwrap_or(0) / groups.max(1)) * kernel[0] * kernel[1];
            per_out.saturating_mul(out).saturating_add(if bias { out } else { 0 })
        }
        LayerSpec::BatchNorm { affine: true, .. } => 2 * shape.first().copied().unwrap_or(0),
        _ => 0,
    }
}

/// Preset names, comma-separated, for messages.
pub fn preset_names() -> String {
    PRESETS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// Whether a whole number failed to parse only for being too large.
fn is_overflow(e: &std::num::ParseIntError) -> bool {
    *e.kind() == std::num::IntErrorKind::PosOverflow
}

/// Splits at `-` outside parentheses.
fn split_layers(text: &str) -> std::result::Result<Vec<&str>, String> {
    let mut tokens = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' if depth == 0 => return Err(format!("unmatched `)` at character {}", i + 1)),
            ')' => depth -= 1,
            '-' if depth == 0 => {
                tokens.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unmatched `(`".into());
    }
    tokens.push(text[start..].trim());
    if tokens.len() > 1 && tokens.iter().any(|t| t.is_empty()) {
        return Err("an empty layer between two `-`".into());
    }
    tokens.retain(|t| !t.is_empty());
    Ok(tokens)
}

/// Positional and named arguments of one layer token.
struct Args<'a> {
    layer: &'a str,
    positional: Vec<&'a str>,
    named: Vec<(&'a str, &'a str)>,
}

impl<'a> Args<'a> {
    fn parse(token: &'a str) -> std::result::Result<(&'a str, Args<'a>), String> {
        let (name, inner) = match token.find('(') {
            Some(open) => {
                let inner = token[open + 1..]
                    .strip_suffix(')')
                    .ok_or_else(|| format!("`{token}`: missing `)`"))?;
                (token[..open].trim(), inner)
            }
            None => (token, ""),
        };
        let mut args = Args { layer: token, positional: Vec::new(), named: Vec::new() };
        for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                // A repeated option would otherwise silently lose one value.
                Some((key, _)) if args.named.iter().any(|(k, _)| *k == key.trim()) => {
                    return Err(format!("`{token}`: option `{}` is given twice", key.trim()));
                }
                Some((key, value)) => args.named.push((key.trim(), value.trim())),
                None if args.named.is_empty() => args.positional.push(part),
                None => return Err(format!("`{token}`: positional `{part}` after a named one")),
            }
        }
        Ok((name, args))
    }

    fn expect(&self, max_positional: usize, keys: &[&str]) -> std::result::Result<(), String> {
        if self.positional.len() > max_positional {
            return Err(format!("`{}`: too many arguments", self.layer));
        }
        match self.named.iter().find(|(k, _)| !keys.contains(k)) {
            Some((k, _)) => {
                Err(format!("`{}`: unknown option `{k}` (known: {})", self.layer, keys.join(", ")))
            }
            None => Ok(()),
        }
    }

    fn named(&self, key: &str) -> Option<&'a str> {
        self.named.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn size(&self, text: &str) -> std::result::Result<usize, String> {
        match text.parse::<usize>() {
            Ok(v) if v > 0 => Ok(v),
            Err(e) if is_overflow(&e) => Err(self.too_large(text)),
            _ => Err(format!("`{}`: `{text}` is not a positive integer", self.layer)),
        }
    }

    fn pair(&self, text: &str, allow_zero: bool) -> std::result::Result<[usize; 2], String> {
        let parse = |t: &str| match t.parse::<usize>() {
            Ok(v) if v > 0 || allow_zero => Ok(v),
            Err(e) if is_overflow(&e) => Err(self.too_large(t)),
            _ => Err(format!("`{}`: `{text}` is not a size like 3 or 3x2", self.layer)),
        };
        match text.split_once('x') {
            Some((a, b)) => Ok([parse(a)?, parse(b)?]),
            None => parse(text).map(|v| [v, v]),
        }
    }

    /// The message for a whole number beyond what a size can be.
    fn too_large(&self, text: &str) -> String {
        format!("`{}`: `{text}` is too large for a size", self.layer)
    }

    /// `key`'s value as a number in `range`, or `default` when absent.
    fn number(
        &self,
        key: &str,
        default: f64,
        range: std::ops::RangeInclusive<f64>,
    ) -> std::result::Result<f64, String> {
        let Some(text) = self.named(key) else { return Ok(default) };
        match text.parse::<f64>() {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => {
                // A lower bound of f64::MIN_POSITIVE means "above 0".
                let (lo, hi) = (*range.start(), *range.end());
                let from = if lo == f64::MIN_POSITIVE { "(0".into() } else { format!("[{lo}") };
                Err(format!("`{}`: {key}={text} is not a number in {from}, {hi}]", self.layer))
            }
        }
    }

    fn flag(&self, key: &str, default: bool) -> std::result::Result<bool, String> {
        match self.named(key) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(format!("`{}`: {key}={other} is not true or false", self.layer)),
        }
    }
}

fn parse_layer(token: &str) -> std::result::Result<LayerSpec, String> {
    let (name, args) = Args::parse(token)?;
    match name {
        "linear" => {
            args.expect(1, &["bias"])?;
            let out = args.positional.first().map(|t| args.size(t)).transpose()?;
            Ok(LayerSpec::Linear { out, bias: args.flag("bias", true)? })
        }
        "conv" => {
            args.expect(2, &["stride", "pad", "groups", "bias"])?;
            let [out, kernel] = args.positional[..] else {
                return Err(format!("`{token}`: conv needs (out_channels, kernel)"));
            };
            Ok(LayerSpec::Conv {
                out: args.size(out)?,
                kernel: args.pair(kernel, false)?,
                stride: args.named("stride").map_or(Ok([1, 1]), |s| args.pair(s, false))?,
                pad: args.named("pad").map_or(Ok([0, 0]), |s| args.pair(s, true))?,
                groups: args.named("groups").map_or(Ok(1), |s| args.size(s))?,
                bias: args.flag("bias", true)?,
            })
        }
        "maxpool" => {
            args.expect(1, &["stride", "pad"])?;
            let Some(kernel) = args.positional.first() else {
                return Err(format!("`{token}`: maxpool needs a kernel size, e.g. maxpool(2)"));
            };
            let kernel = args.pair(kernel, false)?;
            Ok(LayerSpec::MaxPool {
                kernel,
                stride: args.named("stride").map_or(Ok(kernel), |s| args.pair(s, false))?,
                pad: args.named("pad").map_or(Ok([0, 0]), |s| args.pair(s, true))?,
            })
        }
        "bn" => {
            args.expect(0, &["eps", "momentum", "affine"])?;
            let defaults = BatchNormConfig::default();
            let eps = args.number("eps", defaults.eps, f64::MIN_POSITIVE..=1.0)?;
            Ok(LayerSpec::BatchNorm {
                eps,
                momentum: args.number("momentum", defaults.momentum, 0.0..=1.0)?,
                affine: args.flag("affine", defaults.affine)?,
            })
        }
        "relu" | "flatten" => {
            args.expect(0, &[])?;
            Ok(if name == "relu" { LayerSpec::Relu } else { LayerSpec::Flatten })
        }
        other => Err(format!(
            "unknown layer `{other}` (layers: linear, conv, maxpool, relu, flatten, bn; \
             presets: {})",
            preset_names()
        )),
    }
}

/// Sizes one layer for a sample of `shape` (without the batch dimension).
fn build_layer(
    spec: &LayerSpec,
    shape: &[usize],
    classes: usize,
    is_last: bool,
    rng: &mut Rng,
) -> std::result::Result<Box<dyn Layer>, String> {
    match *spec {
        LayerSpec::Linear { out, bias } => {
            let [features] = shape[..] else {
                return Err(format!("linear needs a flat input, found {shape:?}; add `flatten`"));
            };
            let out = match out {
                Some(out) => out,
                None if is_last => classes,
                None => return Err("only the last `linear` may omit its size".into()),
            };
            Ok(Box::new(Linear::new(features, out, bias, rng)))
        }
        LayerSpec::Conv { out, kernel, stride, pad, groups, bias } => {
            let [c, h, w] = shape[..] else {
                return Err(format!("conv needs a [c, h, w] input, found {shape:?}"));
            };
            if c % groups != 0 || out % groups != 0 {
                return Err(format!("conv groups={groups} must divide {c} in and {out} out"));
            }
            check_window("conv", [h, w], kernel, pad)?;
            let config = Conv2dConfig {
                in_channels: c,
                out_channels: out,
                kernel,
                stride,
                padding: pad,
                groups,
                bias,
            };
            Ok(Box::new(Conv2d::new(config, rng)))
        }
        LayerSpec::MaxPool { kernel, stride, pad } => {
            let [_, h, w] = shape[..] else {
                return Err(format!("maxpool needs a [c, h, w] input, found {shape:?}"));
            };
            if pad[0] * 2 > kernel[0] || pad[1] * 2 > kernel[1] {
                return Err("maxpool padding must be at most half the kernel".into());
            }
            check_window("maxpool", [h, w], kernel, pad)?;
            Ok(Box::new(MaxPool2d::new(kernel, stride, pad)))
        }
        LayerSpec::Relu => Ok(Box::new(Relu)),
        LayerSpec::Flatten => Ok(Box::new(Flatten)),
        LayerSpec::BatchNorm { eps, momentum, affine } => {
            // BatchNorm2d after a conv, BatchNorm1d after a linear.
            let channels = match shape[..] {
                [c, _, _] | [c] => c,
                _ => {
                    return Err(format!(
                        "bn needs a [c, h, w] or [features] input, found {shape:?}"
                    ))
                }
            };
            Ok(Box::new(BatchNorm::new(channels, BatchNormConfig { eps, momentum, affine })))
        }
    }
}

fn check_window(
    layer: &str,
    [h, w]: [usize; 2],
    kernel: [usize; 2],
    pad: [usize; 2],
) -> std::result::Result<(), String> {
    if h + 2 * pad[0] < kernel[0] || w + 2 * pad[1] < kernel[1] {
        return Err(format!(
            "{layer} kernel {}x{} does not fit its {h}x{w} input (padding {}x{})",
            kernel[0], kernel[1], pad[0], pad[1]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_build_for_mnist() {
        for (name, _) in PRESETS {
            let spec = ModelSpec::parse(name).unwrap();
            let net = spec.build(&[1, 28, 28], 10, &mut Rng::new(0, 0)).unwrap();
            assert_eq!(net.output_shape(), vec![10], "{name}");
        }
    }

    #[test]
    fn spec_round_trips_through_layer_specs() {
        let text = "conv(8,3x2,stride=2,pad=1x0,bias=false)-relu-maxpool(3,stride=2,pad=1)\
                    -flatten-linear(20)-relu-linear";
        let net = ModelSpec::parse(text).unwrap().build(&[3, 12, 10], 4, &mut Rng::new(0, 0));
        let spec = net.unwrap().spec();
        assert_eq!(
            spec,
            "conv(8,3x2,stride=2,pad=1x0,bias=false)-relu-maxpool(3,stride=2,pad=1)\
             -flatten-linear(20)-relu-linear(4)"
        );
        let again = ModelSpec::parse(&spec).unwrap().build(&[3, 12, 10], 4, &mut Rng::new(0, 0));
        assert_eq!(again.unwrap().spec(), spec);
    }

    #[test]
    fn bn_follows_conv_and_linear() {
        let text = "conv(8,3,pad=1)-bn-relu-maxpool(2)-flatten-linear(16)\
                    -bn(eps=0.001,momentum=0.01,affine=false)-relu-linear";
        let net = ModelSpec::parse(text).unwrap().build(&[1, 28, 28], 10, &mut Rng::new(0, 0));
        let net = net.unwrap();
        assert_eq!(net.spec(), format!("{text}(10)"));
        let names: Vec<String> = net.named_buffers().into_iter().map(|(n, _)| n).collect();
        let want = ["1.running_mean", "1.running_var", "1.num_batches_tracked"];
        assert_eq!(names[..3], want);
        assert_eq!(names.len(), 6);
        assert_eq!(net.named_params().iter().filter(|(n, _)| n.starts_with("1.")).count(), 2);
        assert_eq!(net.named_params().iter().filter(|(n, _)| n.starts_with("6.")).count(), 0);
    }

    #[test]
    fn bad_specs_name_the_layer() {
        let cases = [
            ("conv(8)", "conv needs"),
            ("flatten-linear(0)", "not a positive integer"),
            ("dense(3)", "unknown layer `dense`"),
            ("linear(10)", "flat input"),
            ("flatten-linear(5)", "must give 10 class scores"),
            ("conv(4,3,pad=1,dilation=2)-flatten-linear", "unknown option `dilation`"),
            ("lenet", "does not fit its 4x4 input"),
            ("flatten--linear", "empty layer"),
            ("flatten-linear(10))", "unmatched `)`"),
            ("flatten-linear(10", "unmatched `(`"),
            ("flatten-linear(100000000)-linear", "parameters by layer 2"),
            ("bn(2)-flatten-linear", "too many arguments"),
            ("bn(eps=0)-flatten-linear", "eps=0 is not a number"),
            ("bn(momentum=1.5)-flatten-linear", "momentum=1.5 is not a number"),
            ("bn(affine=no)-flatten-linear", "affine=no is not true or false"),
            ("bn(gamma=1)-flatten-linear", "unknown option `gamma`"),
            ("conv(4,3,pad=1,pad=2)-flatten-linear", "option `pad` is given twice"),
            ("flatten-linear(99999999999999999999)", "`99999999999999999999` is too large"),
            ("conv(4,99999999999999999999x3)-flatten-linear", "is too large for a size"),
            ("bn(eps=0.1,eps=0.1)-flatten-linear", "option `eps` is given twice"),
        ];
        for (text, want) in cases {
            let result = ModelSpec::parse(text)
                .and_then(|spec| spec.build(&[1, 8, 8], 10, &mut Rng::new(0, 0)).map(|_| ()));
            let message = result.expect_err(text).to_string();
            assert!(message.contains(want), "{text}: {message}");
        }
    }
}
