//! Layers with explicit `forward` and `backward`, the [`Sequential`]
//! container, and model specs and presets.
//!
//! Conventions: activations are NCHW `f32`; the first dimension is always the
//! batch. Parameter gradients accumulate (`+=`) until [`Sequential::zero_grad`].

mod activation;
mod batchnorm;
mod conv2d;
mod flatten;
mod linear;
mod pool;
mod sequential;
pub mod spec;

pub use activation::Relu;
pub use batchnorm::{BatchNorm, BatchNormConfig};
pub use conv2d::{Conv2d, Conv2dConfig};
pub use flatten::Flatten;
pub use linear::Linear;
pub use pool::MaxPool2d;
pub use sequential::Sequential;
pub use spec::{LayerSpec, ModelSpec};

use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::Result;

/// Whether a forward pass is part of training (cache what backward needs)
/// or of inference (cache nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward pass followed by backward.
    Train,
    /// Forward pass only.
    Eval,
}

/// A trainable tensor and its gradient, which has the same shape.
#[derive(Clone, Debug)]
pub struct Param {
    /// The parameter, e.g. a weight `[out, in]`.
    pub value: Tensor,
    /// dL/dvalue, accumulated by `backward`.
    pub grad: Tensor,
}

impl Param {
    /// A parameter holding `value`, with a zero gradient.
    pub fn new(value: Tensor) -> Param {
        let grad = Tensor::zeros(value.shape());
        Param { value, grad }
    }

    /// A parameter of `shape` drawn from `U(-bound, bound)`.
    pub fn uniform(shape: &[usize], bound: f32, rng: &mut Rng) -> Param {
        let mut value = Tensor::zeros(shape);
        value.data_mut().iter_mut().for_each(|v| *v = rng.uniform(-bound, bound));
        Param::new(value)
    }
}

/// State a layer updates itself rather than by gradient descent, such as a
/// batch norm's running statistics. Saved in the model file next to the
/// parameters; never given to an optimizer.
#[derive(Clone, Debug, PartialEq)]
pub enum Buffer {
    /// Float values, e.g. `running_mean [c]`.
    F32(Tensor),
    /// A count, a scalar `i64` in the model file as in PyTorch, e.g.
    /// `num_batches_tracked`.
    I64(i64),
}

impl Buffer {
    /// The shape: the tensor's, or `[]` for a count.
    pub fn shape(&self) -> &[usize] {
        match self {
            Buffer::F32(value) => value.shape(),
            Buffer::I64(_) => &[],
        }
    }
}

/// One layer of a network.
///
/// `forward` writes into an output buffer that the container has already
/// sized with [`Layer::output_shape`]; `backward` reads the same input and
/// output again, plus anything the layer cached in `forward`. Neither
/// allocates once the batch shape is fixed.
pub trait Layer: Send + Sync + std::fmt::Debug {
    /// The layer in spec syntax, e.g. `conv(16,5,pad=2)`.
    fn spec(&self) -> String;

    /// The output shape for an input of shape `x_shape` (batch first).
    fn output_shape(&self, x_shape: &[usize]) -> Vec<usize>;

    /// Computes `y` from `x`. `y` already has [`Layer::output_shape`].
    fn forward(&mut self, x: &Tensor, y: &mut Tensor, mode: Mode);

    /// Given `dy = dL/dy`, adds the parameter gradients into the layer's
    /// [`Param::grad`]s and, when `dx` is given, writes `dL/dx` into it
    /// (it already has the shape of `x`). `x` and `y` are what the last
    /// `forward` in [`Mode::Train`] saw and produced.
    fn backward(&mut self, x: &Tensor, y: &Tensor, dy: &Tensor, dx: Option<&mut Tensor>);

    /// The parameters, in PyTorch's `state_dict` order.
    fn params(&self) -> &[Param] {
        &[]
    }

    /// The parameters, writable.
    fn params_mut(&mut self) -> &mut [Param] {
        &mut []
    }

    /// PyTorch's names for [`Layer::params`], e.g. `["weight", "bias"]`.
    fn param_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// The buffers, in PyTorch's `state_dict` order (after the parameters
    /// there).
    fn buffers(&self) -> &[Buffer] {
        &[]
    }

    /// The buffers, writable. A caller keeps each one's kind and shape.
    fn buffers_mut(&mut self) -> &mut [Buffer] {
        &mut []
    }

    /// PyTorch's names for [`Layer::buffers`], e.g. `["running_mean", …]`.
    fn buffer_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// Refuses an input of `x_shape` that the layer cannot take in `mode`,
    /// before any forward pass runs; [`Sequential::forward`] calls it.
    /// Most layers take any input their build accepted.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Shape`] or [`crate::Error::InvalidArgument`] naming
    /// the shape and what the layer needs.
    fn check_input(&self, _x_shape: &[usize], _mode: Mode) -> Result<()> {
        Ok(())
    }

    /// Multiply-adds times two of one forward pass over `x_shape`, for
    /// throughput reports. Backward costs about twice this.
    fn flops(&self, _x_shape: &[usize]) -> u64 {
        0
    }

    /// Whether the layer only changes the shape, keeping the values in
    /// order (`flatten`), so its output may take over its input's buffer.
    fn is_reshape(&self) -> bool {
        false
    }

    /// Whether this is a ReLU, which the layers around it may fuse.
    fn is_relu(&self) -> bool {
        false
    }

    /// With `on`, the layer applies a ReLU to its output as it writes it,
    /// while the output is still in cache, so the ReLU layer after it need
    /// not pass over the tensor again. Returns whether the layer can (if
    /// not, nothing changes).
    fn fuse_relu_after(&mut self, _on: bool) -> bool {
        false
    }

    /// With `on`, the layer's `dx` is multiplied by the derivative of the
    /// ReLU that produced its input (1 where `x > 0`, else 0) as it is
    /// written, so that ReLU's own backward need not run. Returns whether
    /// the layer can (if not, nothing changes).
    fn fuse_relu_before(&mut self, _on: bool) -> bool {
        false
    }
}

/// PyTorch's default bound for weights and biases of Linear and Conv2d:
/// `kaiming_uniform_(a=√5)` gives `U(±1/√fan_in)` for the weight, and the bias
/// uses the same bound. See
/// <https://pytorch.org/docs/stable/generated/torch.nn.Linear.html>.
pub fn default_init_bound(fan_in: usize) -> f32 {
    1.0 / (fan_in as f32).sqrt()
}
