//! Stochastic gradient descent with `torch.optim.SGD`'s rule: L2 weight
//! decay added to the gradient, momentum with dampening (never on the first
//! step), optional Nesterov look-ahead. See
//! <https://pytorch.org/docs/stable/generated/torch.optim.SGD.html>.

use super::{Optimizer, OptimizerConfig};
use crate::nn::Param;
use rayon::prelude::*;

/// SGD with momentum, dampening, Nesterov momentum and weight decay.
///
/// With `d = grad + weight_decay * p`, each step does
/// `buf = d` on the first step with momentum, `buf = momentum * buf +
/// (1 - dampening) * d` afterwards, then `p -= lr * u` with `u = d + momentum *
/// buf` (Nesterov), `u = buf` (momentum) or `u = d` (momentum 0).
///
/// Built by [`OptimizerConfig::build_sgd`].
#[derive(Clone, Debug)]
pub struct Sgd {
    lr: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
    /// One momentum buffer per parameter position, empty until the first
    /// step with a non-zero momentum fills it (PyTorch's `momentum_buffer`).
    buffers: Vec<Vec<f32>>,
}

impl Sgd {
    /// An optimiser from a config that [`OptimizerConfig::validate`] accepted.
    pub(super) fn new(config: &OptimizerConfig) -> Sgd {
        Sgd {
            lr: config.lr,
            momentum: config.momentum,
            dampening: config.dampening,
            nesterov: config.nesterov,
            weight_decay: config.weight_decay,
            buffers: Vec::new(),
        }
    }

    /// The hyper-parameters as the f32 factors PyTorch applies to f32
    /// tensors (Python floats are cast to the tensor's type).
    fn factors(&self) -> Factors {
        Factors {
            lr: self.lr as f32,
            wd: self.weight_decay as f32,
            momentum: self.momentum as f32,
            undamped: (1.0 - self.dampening) as f32,
        }
    }

    /// The momentum buffer of the parameter at position `index`; `None`
    /// before that parameter's first step with a non-zero momentum.
    pub fn momentum_buffer(&self, index: usize) -> Option<&[f32]> {
        self.buffers.get(index).filter(|buf| !buf.is_empty()).map(Vec::as_slice)
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut dyn Iterator<Item = &mut Param>) {
        let f = self.factors();
        for (i, param) in params.enumerate() {
            if i == self.buffers.len() {
                self.buffers.push(Vec::new());
            }
            let buf = &mut self.buffers[i];
            let p = param.value.data_mut();
            let g = param.grad.data();
            assert_eq!(p.len(), g.len(), "parameter {i}: gradient and value sizes differ");

            // Momentum 0 keeps no state; a buffer left by an earlier momentum
            // stays untouched, as in PyTorch.
            if self.momentum == 0.0 {
                descend(p, g, &f);
                continue;
            }

            // First step with momentum: buf = d, no dampening. Otherwise
            // buf = momentum * buf + (1 - dampening) * d.
            if buf.is_empty() {
                buf.extend(p.iter().zip(g).map(|(&p, &g)| g + f.wd * p));
                first_momentum_step(p, buf, &f, self.nesterov);
            } else if self.nesterov {
                momentum_step::<true>(p, g, buf, &f);
            } else {
                momentum_step::<false>(p, g, buf, &f);
            }
        }
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn momentum(&self) -> Option<f64> {
        Some(self.momentum)
    }

    fn set_momentum(&mut self, momentum: f64) {
        self.momentum = momentum;
    }
}

/// Elements per task when a parameter's update is split over threads.
const PARALLEL_CHUNK: usize = 1 << 15;

/// The scalars of one step, in the precision of the update.
struct Factors {
    lr: f32,
    wd: f32,
    momentum: f32,
    /// `1 - dampening`.
    undamped: f32,
}

/// `p -= lr * (g + wd * p)`. With `wd = 0` the decay term is exactly 0 for
/// finite parameters, so one loop serves both cases.
fn descend(p: &mut [f32], g: &[f32], f: &Factors) {
    let chunks = p.par_chunks_mut(PARALLEL_CHUNK).zip(g.par_chunks(PARALLEL_CHUNK));
    chunks.for_each(|(p, g)| {
        for (p, &g) in p.iter_mut().zip(g) {
            let d = g + f.wd * *p;
            *p -= f.lr * d;
        }
    });
}

/// The first step with momentum, where `buf` already holds `d`: Nesterov
/// uses `d + momentum * buf`, plain momentum uses `buf`.
fn first_momentum_step(p: &mut [f32], buf: &[f32], f: &Factors, nesterov: bool) {
    if nesterov {
        for (p, &b) in p.iter_mut().zip(buf) {
            *p -= f.lr * (b + f.momentum * b);
        }
    } else {
        for (p, &b) in p.iter_mut().zip(buf) {
            *p -= f.lr * b;
        }
    }
}

/// A step after the first: update `buf` from `d = g + wd * p`, then move `p`.
/// Large parameters are split over the thread pool; every element is
/// independent, so the result does not depend on the split.
fn momentum_step<const NESTEROV: bool>(p: &mut [f32], g: &[f32], buf: &mut [f32], f: &Factors) {
    assert_eq!(p.len(), buf.len(), "a parameter changed size between optimizer steps");
    let chunks = p.par_chunks_mut(PARALLEL_CHUNK).zip(g.par_chunks(PARALLEL_CHUNK));
    chunks.zip(buf.par_chunks_mut(PARALLEL_CHUNK)).for_each(|((p, g), buf)| {
        for ((p, &g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
            let d = g + f.wd * *p;
            *b = f.momentum * *b + f.undamped * d;
            let u = if NESTEROV { d + f.momentum * *b } else { *b };
            *p -= f.lr * u;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::OptimizerKind;
    use crate::tensor::Tensor;

    fn params() -> Vec<Param> {
        let mut w = Param::new(Tensor::from_vec(&[2, 2], vec![1.0, -2.0, 0.5, 0.0]).unwrap());
        w.grad = Tensor::from_vec(&[2, 2], vec![0.5, 0.25, -1.0, 2.0]).unwrap();
        let mut b = Param::new(Tensor::from_vec(&[3], vec![0.0, 1.0, 2.0]).unwrap());
        b.grad = Tensor::from_vec(&[3], vec![1.0, 1.0, -1.0]).unwrap();
        vec![w, b]
    }

    fn sgd(momentum: f64, nesterov: bool) -> Sgd {
        let config = OptimizerConfig {
            lr: 0.5,
            momentum,
            nesterov,
            ..OptimizerConfig::new(OptimizerKind::Sgd)
        };
        config.build_sgd().unwrap()
    }

    #[test]
    fn plain_step_and_no_state() {
        let mut params = params();
        let mut opt = sgd(0.0, false);
        opt.step(&mut params.iter_mut());
        assert_eq!(params[0].value.data(), &[0.75, -2.125, 1.0, -1.0]);
        assert!(opt.momentum_buffer(0).is_none());
    }

    #[test]
    fn first_momentum_step_is_plain_sgd() {
        let mut with = params();
        let mut without = params();
        sgd(0.9, false).step(&mut with.iter_mut());
        sgd(0.0, false).step(&mut without.iter_mut());
        assert_eq!(with[0].value.data(), without[0].value.data());
        assert_eq!(with[1].value.data(), without[1].value.data());
    }

    #[test]
    fn state_is_created_once() {
        let mut params = params();
        let mut opt = sgd(0.9, true);
        opt.step(&mut params.iter_mut());
        let ptrs: Vec<_> = opt.buffers.iter().map(|b| (b.as_ptr(), b.capacity())).collect();
        let outer = (opt.buffers.as_ptr(), opt.buffers.capacity());
        for _ in 0..4 {
            opt.step(&mut params.iter_mut());
        }
        let after: Vec<_> = opt.buffers.iter().map(|b| (b.as_ptr(), b.capacity())).collect();
        assert_eq!(ptrs, after);
        assert_eq!(outer, (opt.buffers.as_ptr(), opt.buffers.capacity()));
        assert_eq!(opt.buffers.len(), 2);
    }

    #[test]
    fn momentum_switched_on_later_starts_from_the_gradient() {
        let mut params = params();
        let mut opt = sgd(0.0, false);
        opt.step(&mut params.iter_mut());
        opt.set_momentum(0.9);
        opt.step(&mut params.iter_mut());
        assert_eq!(opt.momentum_buffer(1), Some(&[1.0, 1.0, -1.0][..]));
    }

    #[test]
    #[should_panic(expected = "changed size")]
    fn a_resized_parameter_is_an_invariant_failure() {
        let mut params = params();
        let mut opt = sgd(0.9, false);
        opt.step(&mut params.iter_mut());
        params[1] = Param::new(Tensor::zeros(&[4]));
        opt.step(&mut params.iter_mut());
    }
}
