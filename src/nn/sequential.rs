//! A stack of layers applied in order, owning every activation and gradient
//! buffer so a training step of a fixed batch shape allocates nothing.

use std::time::Instant;

use super::{Buffer, Layer, Mode, Param};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Layers applied one after the other, as PyTorch's `nn.Sequential`.
#[derive(Debug)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
    /// Shape of one sample, e.g. `[1, 28, 28]`.
    input_shape: Vec<usize>,
    /// `acts[0]` is the batch, `acts[i + 1]` the output of layer `i`.
    acts: Vec<Tensor>,
    /// `grads[i]` is dL/d`acts[i]`, for `i` in `1..layers.len()`.
    grads: Vec<Tensor>,
    /// Whether `acts` holds a training forward pass that backward can use.
    ready_for_backward: bool,
    /// Seconds spent in each layer's forward and backward since profiling
    /// was switched on; `None` when off.
    profile: Option<Vec<[f64; 2]>>,
    /// Shapes of `acts` for the last batch shape seen, so a step of the same
    /// shape computes (and allocates) none.
    shapes: Vec<Vec<usize>>,
    /// Per layer: a ReLU whose forward the layer before it does.
    relu_done_before: Vec<bool>,
    /// Per layer: a ReLU whose backward the layer after it does.
    relu_done_after: Vec<bool>,
}

impl Sequential {
    /// A network for samples of `input_shape` (without the batch dimension).
    /// The layers must already fit that shape, as [`super::ModelSpec::build`]
    /// guarantees.
    pub fn new(input_shape: &[usize], layers: Vec<Box<dyn Layer>>) -> Sequential {
        let count = layers.len();
        let mut net = Sequential {
            layers,
            input_shape: input_shape.to_vec(),
            acts: vec![Tensor::default(); count + 1],
            grads: vec![Tensor::default(); count],
            ready_for_backward: false,
            profile: None,
            shapes: Vec::new(),
            relu_done_before: vec![false; count],
            relu_done_after: vec![false; count],
        };
        net.set_fusion(true);
        net
    }

    /// Fuses each ReLU into its neighbours (on by default): the layer before
    /// it applies it to its output while that is still in cache, and the
    /// layer after it applies its derivative to `dx`, so the ReLU's own
    /// passes over the whole tensor do not run. The numbers are the same
    /// either way, bit for bit. With fusion on, [`Sequential::activation`]
    /// of a layer before a fused ReLU and [`Sequential::activation_grad`] of
    /// a fused ReLU are not kept.
    pub fn set_fusion(&mut self, on: bool) {
        let count = self.layers.len();
        self.relu_done_before = vec![false; count];
        self.relu_done_after = vec![false; count];
        for j in 0..count {
            if !self.layers[j].is_relu() {
                continue;
            }
            if j > 0 {
                self.relu_done_before[j] = self.layers[j - 1].fuse_relu_after(on) && on;
            }
            if j + 1 < count {
                self.relu_done_after[j] = self.layers[j + 1].fuse_relu_before(on) && on;
            }
        }
        self.ready_for_backward = false;
    }

    /// Shape of one input sample.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Shape of one output sample, e.g. `[10]`.
    pub fn output_shape(&self) -> Vec<usize> {
        let mut shape = [&[1][..], &self.input_shape].concat();
        for layer in &self.layers {
            shape = layer.output_shape(&shape);
        }
        shape[1..].to_vec()
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// The model in spec syntax, every size explicit.
    pub fn spec(&self) -> String {
        self.layers.iter().map(|l| l.spec()).collect::<Vec<_>>().join("-")
    }

    /// Runs `x [n, input_shape…]` through every layer and returns the output
    /// (the logits, for a classifier). In [`Mode::Train`] the activations are
    /// kept for [`Sequential::backward`].
    ///
    /// # Errors
    ///
    /// [`Error::Shape`] when a sample of `x` does not have the input shape;
    /// the error of [`Layer::check_input`] when a layer refuses its input in
    /// `mode` (batch norm trains on at least two values per channel).
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<&Tensor> {
        if x.rank() != self.input_shape.len() + 1 || x.shape()[1..] != self.input_shape[..] {
            let expected = [&[0][..], &self.input_shape].concat();
            return Err(Error::Shape {
                op: "model input (0 = any batch)",
                expected,
                found: x.shape().to_vec(),
            });
        }
        if self.shapes.first().map(Vec::as_slice) != Some(x.shape()) {
            self.shapes = vec![x.shape().to_vec()];
            for layer in &self.layers {
                let next = layer.output_shape(self.shapes.last().expect("starts with the input"));
                self.shapes.push(next);
            }
        }
        // Every call, not once per shape: the mode may change between calls.
        for (i, layer) in self.layers.iter().enumerate() {
            layer.check_input(&self.shapes[i], mode).map_err(|e| match e {
                Error::InvalidArgument(detail) => {
                    Error::arg(format!("layer {} (`{}`): {detail}", i + 1, layer.spec()))
                }
                other => other,
            })?;
        }
        // Backward reads the input again; inference reads it in place.
        let training = mode == Mode::Train;
        if training || self.layers.is_empty() {
            self.acts[0].copy_from(x);
        }
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let started = self.profile.as_ref().map(|_| Instant::now());
            if !training && i > 0 && layer.is_reshape() {
                // Inference keeps no input for backward, so a reshape takes
                // its input's buffer instead of copying it.
                self.acts.swap(i, i + 1);
                self.acts[i + 1].reshape(&self.shapes[i + 1]).expect("a reshape keeps the size");
                self.acts[i].resize(&self.shapes[i]);
                continue;
            }
            if self.relu_done_before[i] {
                // The layer before wrote this ReLU's output: take its buffer
                // and give it this one for its next pass (sized now, so no
                // later step allocates).
                self.acts.swap(i, i + 1);
                self.acts[i].resize(&self.shapes[i]);
                continue;
            }
            let (done, rest) = self.acts.split_at_mut(i + 1);
            let y = &mut rest[0];
            y.resize(&self.shapes[i + 1]);
            let input = if !training && i == 0 { x } else { &done[i] };
            layer.forward(input, y, mode);
            if let (Some(profile), Some(started)) = (&mut self.profile, started) {
                profile[i][0] += started.elapsed().as_secs_f64();
            }
        }
        self.ready_for_backward = mode == Mode::Train;
        Ok(&self.acts[self.layers.len()])
    }

    /// The output of the last forward pass.
    pub fn output(&self) -> &Tensor {
        &self.acts[self.layers.len()]
    }

    /// The output of layer `i` in the last forward pass (see
    /// [`Sequential::set_fusion`] for the layers it is not kept for; after a
    /// pass in [`Mode::Eval`], the output of a layer followed by a reshape
    /// such as `flatten` is not kept either).
    ///
    /// # Panics
    ///
    /// When `i` is not a layer index.
    pub fn activation(&self, i: usize) -> &Tensor {
        &self.acts[i + 1]
    }

    /// dL/d(output of layer `i`) from the last backward pass, for `i` below the
    /// last layer (whose gradient is the `dlogits` passed in) and at or above
    /// the first layer with parameters (below it, nothing is computed).
    ///
    /// # Panics
    ///
    /// When `i + 1` is not a layer index.
    pub fn activation_grad(&self, i: usize) -> &Tensor {
        &self.grads[i + 1]
    }

    /// Carries `dlogits` (dL/d output of the last forward pass) back through
    /// every layer, adding into each parameter's gradient. Gradients that no
    /// parameter needs are not computed: not the input's, and none below the
    /// first layer with parameters (a `flatten` in front of the first
    /// `linear`), as autograd skips what does not require a gradient.
    ///
    /// # Panics
    ///
    /// When the last forward pass was not in [`Mode::Train`], or `dlogits`
    /// does not have the output's shape.
    pub fn backward(&mut self, dlogits: &Tensor) {
        assert!(self.ready_for_backward, "backward follows a forward pass in Mode::Train");
        let last = self.layers.len();
        assert_eq!(dlogits.shape(), self.acts[last].shape(), "dlogits has the logits' shape");

        // Layers below the first with parameters have nothing to learn.
        let first = self.layers.iter().position(|l| !l.params().is_empty()).unwrap_or(last);
        for i in (first..last).rev() {
            if self.relu_done_after[i] {
                // The layer after this ReLU wrote its input's gradient.
                continue;
            }
            let started = self.profile.as_ref().map(|_| Instant::now());
            let (below, above) = self.grads.split_at_mut(i + 1);
            let dy = if i + 1 == last { dlogits } else { &above[0] };
            // Through a fused ReLU below, dx is the ReLU's input gradient.
            let at = if i > 0 && self.relu_done_after[i - 1] { i - 1 } else { i };
            let dx = if i == first {
                None
            } else {
                below[at].resize(self.acts[i].shape());
                Some(&mut below[at])
            };
            self.layers[i].backward(&self.acts[i], &self.acts[i + 1], dy, dx);
            if let (Some(profile), Some(started)) = (&mut self.profile, started) {
                profile[i][1] += started.elapsed().as_secs_f64();
            }
        }
    }

    /// Starts (or restarts) timing every layer's forward and backward.
    pub fn start_profile(&mut self) {
        self.profile = Some(vec![[0.0; 2]; self.layers.len()]);
    }

    /// Seconds spent in each layer's `[forward, backward]` since
    /// [`Sequential::start_profile`], and stops timing.
    pub fn take_profile(&mut self) -> Vec<[f64; 2]> {
        self.profile.take().unwrap_or_default()
    }

    /// Sets every parameter gradient to zero.
    pub fn zero_grad(&mut self) {
        self.params_mut().for_each(|p| p.grad.fill(0.0));
    }

    /// Every parameter, in `state_dict` order.
    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.layers.iter().flat_map(|l| l.params().iter())
    }

    /// Every parameter, writable, in `state_dict` order.
    pub fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        self.layers.iter_mut().flat_map(|l| l.params_mut().iter_mut())
    }

    /// Parameters with PyTorch's `state_dict` names (`0.weight`, `0.bias`,
    /// `3.weight`, …): the index is the layer's position in the stack.
    pub fn named_params(&self) -> Vec<(String, &Param)> {
        let mut named = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (name, param) in layer.param_names().iter().zip(layer.params()) {
                named.push((format!("{i}.{name}"), param));
            }
        }
        named
    }

    /// [`Sequential::named_params`], writable.
    pub fn named_params_mut(&mut self) -> Vec<(String, &mut Param)> {
        let mut named = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let names = layer.param_names();
            for (name, param) in names.iter().zip(layer.params_mut()) {
                named.push((format!("{i}.{name}"), param));
            }
        }
        named
    }

    /// Buffers with PyTorch's `state_dict` names (`1.running_mean`,
    /// `1.running_var`, `1.num_batches_tracked`, …), as
    /// [`Sequential::named_params`]. They are not parameters: an optimizer
    /// never sees them.
    pub fn named_buffers(&self) -> Vec<(String, &Buffer)> {
        let mut named = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (name, buffer) in layer.buffer_names().iter().zip(layer.buffers()) {
                named.push((format!("{i}.{name}"), buffer));
            }
        }
        named
    }

    /// [`Sequential::named_buffers`], writable.
    pub fn named_buffers_mut(&mut self) -> Vec<(String, &mut Buffer)> {
        let mut named = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let names = layer.buffer_names();
            for (name, buffer) in names.iter().zip(layer.buffers_mut()) {
                named.push((format!("{i}.{name}"), buffer));
            }
        }
        named
    }

    /// Number of trainable values.
    pub fn param_count(&self) -> usize {
        self.params().map(|p| p.value.numel()).sum()
    }

    /// Floating-point operations of one forward pass over a batch of `n`.
    pub fn flops(&self, n: usize) -> u64 {
        let mut shape = [&[n][..], &self.input_shape].concat();
        let mut total = 0;
        for layer in &self.layers {
            total += layer.flops(&shape);
            shape = layer.output_shape(&shape);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ModelSpec;
    use crate::rng::Rng;

    #[test]
    fn backward_stops_at_the_first_layer_with_parameters() {
        // relu-flatten in front of the linear layer: nothing below it learns.
        let spec = ModelSpec::parse("relu-flatten-linear(3)").unwrap();
        let mut net = spec.build(&[1, 2, 2], 3, &mut Rng::new(0, 1)).unwrap();
        let values: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
        let x = Tensor::from_vec(&[2, 1, 2, 2], values).unwrap();
        net.forward(&x, Mode::Train).unwrap();
        let dlogits = Tensor::from_vec(&[2, 3], vec![1.0, 0.0, -1.0, 0.5, 2.0, 0.0]).unwrap();
        net.zero_grad();
        net.backward(&dlogits);

        // dweight [3, 4] = dlogitsᵀ · flat, where flat = relu(x) as [2, 4].
        let flat = net.activation(1).data().to_vec();
        let mut want = [0.0f32; 12];
        for (o, dw_row) in want.chunks_mut(4).enumerate() {
            for (i, dw) in dw_row.iter_mut().enumerate() {
                *dw = (0..2).map(|s| dlogits.data()[s * 3 + o] * flat[s * 4 + i]).sum();
            }
        }
        assert_eq!(net.params().next().unwrap().grad.data(), &want);

        // The gradients for the flatten and relu outputs were never computed.
        assert_eq!(net.activation_grad(0).numel(), 0);
        assert_eq!(net.activation_grad(1).numel(), 0);
    }

    #[test]
    fn fused_relus_give_the_same_numbers_bit_for_bit() {
        // ReLUs after a conv (direct and unfolded), before a conv, a pool
        // and a linear layer, and after a linear layer.
        let spec = "conv(4,3)-relu-conv(6,3,pad=1)-relu-maxpool(2)-conv(5,3,stride=2)-relu\
                    -flatten-linear(8)-relu-linear(3)";
        let run = |fused: bool| {
            let model = ModelSpec::parse(spec).unwrap();
            let mut net = model.build(&[2, 14, 14], 3, &mut Rng::new(3, 1)).unwrap();
            net.set_fusion(fused);
            let mut rng = Rng::new(4, 2);
            let values: Vec<f32> = (0..5 * 2 * 14 * 14).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let x = Tensor::from_vec(&[5, 2, 14, 14], values).unwrap();
            let mut outputs = Vec::new();
            for _ in 0..2 {
                let logits = net.forward(&x, Mode::Train).unwrap().clone();
                let dlogits = Tensor::from_vec(logits.shape(), logits.data().to_vec()).unwrap();
                net.zero_grad();
                net.backward(&dlogits);
                outputs.push(logits.data().to_vec());
                outputs.extend(net.params().map(|p| p.grad.data().to_vec()));
                for p in net.params_mut() {
                    let step: Vec<f32> = p.grad.data().iter().map(|g| 0.1 * g).collect();
                    p.value.data_mut().iter_mut().zip(step).for_each(|(v, s)| *v -= s);
                }
            }
            outputs
        };
        let bits = |v: Vec<Vec<f32>>| -> Vec<Vec<u32>> {
            v.into_iter().map(|t| t.into_iter().map(f32::to_bits).collect()).collect()
        };
        assert_eq!(bits(run(true)), bits(run(false)));
    }

    #[test]
    fn inference_without_copies_gives_the_training_pass_numbers() {
        // A reshape in the middle (its buffer taken over in inference) and
        // one first (reading the caller's input in place).
        for spec in
            ["conv(3,3)-relu-maxpool(2)-flatten-linear(3)", "flatten-linear(5)-relu-linear(3)"]
        {
            let model = ModelSpec::parse(spec).unwrap();
            let mut net = model.build(&[1, 8, 8], 3, &mut Rng::new(5, 1)).unwrap();
            let mut rng = Rng::new(6, 2);
            let x =
                Tensor::from_vec(&[3, 1, 8, 8], (0..192).map(|_| rng.uniform(-1.0, 1.0)).collect())
                    .unwrap();
            let mut outputs = Vec::new();
            for mode in [Mode::Eval, Mode::Train, Mode::Eval, Mode::Eval, Mode::Train] {
                outputs.push(net.forward(&x, mode).unwrap().data().to_vec());
            }
            assert!(outputs.windows(2).all(|w| w[0] == w[1]), "{spec}: {outputs:?}");
        }
    }
}
