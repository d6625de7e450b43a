//! Adam and AdamW with the rules of `torch.optim.Adam` and `torch.optim.AdamW`
//! (single-tensor implementation), including AMSGrad. See
//! <https://pytorch.org/docs/stable/generated/torch.optim.Adam.html>.

use super::{Optimizer, OptimizerConfig, OptimizerKind};
use crate::kernels::widest;
use crate::nn::Param;
use rayon::prelude::*;

/// Adam, or AdamW when weight decay is decoupled.
///
/// With `t` the 1-based step of a parameter and `g` its gradient (plus
/// `weight_decay * p` for Adam; AdamW first does `p *= 1 - lr * weight_decay`):
///
/// ```text
/// m = beta1 * m + (1 - beta1) * g
/// v = beta2 * v + (1 - beta2) * g²          (AMSGrad: v_max = max(v_max, v), used as v)
/// p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
/// ```
///
/// `eps` is added after the bias correction of `sqrt(v)`, as PyTorch does.
///
/// One departure, for speed: with `eps ≥ 1e-10`, a gradient below
/// [`TINY_GRADIENT`] in magnitude adds nothing to `v`. Its square is a
/// subnormal `f32`, and subnormal arithmetic runs tens of times slower on
/// common CPUs (a model that fits its batch well makes many such gradients);
/// the term it would add changes `sqrt(v) + eps` by less than a rounding.
/// Built by [`OptimizerConfig::build_adam`].
#[derive(Clone, Debug)]
pub struct Adam {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    /// AdamW: decay the parameters instead of adding to the gradient.
    decoupled: bool,
    /// State per parameter position, created on its first step.
    slots: Vec<Slot>,
}

/// PyTorch's per-parameter state: `step`, `exp_avg`, `exp_avg_sq` and
/// `max_exp_avg_sq` (empty without AMSGrad).
#[derive(Clone, Debug)]
struct Slot {
    t: u64,
    m: Vec<f32>,
    v: Vec<f32>,
    v_max: Vec<f32>,
}

impl Adam {
    /// An optimiser from a config that [`OptimizerConfig::validate`] accepted.
    pub(super) fn new(config: &OptimizerConfig) -> Adam {
        Adam {
            lr: config.lr,
            beta1: config.betas.0,
            beta2: config.betas.1,
            eps: config.eps,
            weight_decay: config.weight_decay,
            amsgrad: config.amsgrad,
            decoupled: config.kind == OptimizerKind::AdamW,
            slots: Vec::new(),
        }
    }

    /// Steps taken by the parameter at position `index` (0 before its first).
    pub fn step_count(&self, index: usize) -> u64 {
        self.slots.get(index).map_or(0, |slot| slot.t)
    }

    /// The first moment `m` (PyTorch's `exp_avg`) of the parameter at
    /// position `index`, once it has taken a step.
    pub fn exp_avg(&self, index: usize) -> Option<&[f32]> {
        self.slots.get(index).map(|slot| slot.m.as_slice())
    }

    /// The second moment `v` (`exp_avg_sq`) of the parameter at `index`.
    pub fn exp_avg_sq(&self, index: usize) -> Option<&[f32]> {
        self.slots.get(index).map(|slot| slot.v.as_slice())
    }

    /// The running maximum of `v` (`max_exp_avg_sq`) of the parameter at
    /// `index`; `None` without AMSGrad.
    pub fn max_exp_avg_sq(&self, index: usize) -> Option<&[f32]> {
        self.slots.get(index).filter(|_| self.amsgrad).map(|slot| slot.v_max.as_slice())
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &mut dyn Iterator<Item = &mut Param>) {
        for (i, param) in params.enumerate() {
            // State on the parameter's first step: zero moments.
            let p = param.value.data_mut();
            let g = param.grad.data();
            assert_eq!(p.len(), g.len(), "parameter {i}: gradient and value sizes differ");
            if i == self.slots.len() {
                let v_max = if self.amsgrad { vec![0.0; p.len()] } else { Vec::new() };
                self.slots.push(Slot { t: 0, m: vec![0.0; p.len()], v: vec![0.0; p.len()], v_max });
            }
            let slot = &mut self.slots[i];
            assert_eq!(p.len(), slot.m.len(), "a parameter changed size between optimizer steps");
            slot.t += 1;

            // Scalars in f64, as PyTorch computes them in Python floats, then
            // applied to f32 tensors as f32.
            let t = slot.t as f64;
            let bias_correction1 = 1.0 - self.beta1.powf(t);
            let bias_correction2 = 1.0 - self.beta2.powf(t);
            let f = Factors {
                l2: if self.decoupled { 0.0 } else { self.weight_decay as f32 },
                new1: (1.0 - self.beta1) as f32,
                keep2: self.beta2 as f32,
                new2: (1.0 - self.beta2) as f32,
                tiny: if self.eps >= 1e-10 { TINY_GRADIENT } else { 0.0 },
                sqrt_bias_correction2: bias_correction2.sqrt() as f32,
                eps: self.eps as f32,
                neg_step_size: (-self.lr / bias_correction1) as f32,
            };

            // AdamW's decoupled decay comes before the moment updates.
            if self.decoupled && self.weight_decay != 0.0 {
                let shrink = (1.0 - self.lr * self.weight_decay) as f32;
                p.iter_mut().for_each(|p| *p *= shrink);
            }
            if self.amsgrad {
                update_amsgrad(p, g, slot, &f);
            } else {
                update(p, g, slot, &f);
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
        Some(self.beta1)
    }

    fn set_momentum(&mut self, momentum: f64) {
        self.beta1 = momentum;
    }
}

/// The largest gradient whose square is not a normal `f32` (√`f32::MIN_POSITIVE`).
pub const TINY_GRADIENT: f32 = 1.0842022e-19;

/// The scalars of one parameter's step, in the precision of the update.
struct Factors {
    /// Adam's L2 weight decay added to the gradient (0 for AdamW).
    l2: f32,
    /// `1 - beta1`, the weight of PyTorch's `exp_avg.lerp_(g, 1 - beta1)`.
    new1: f32,
    keep2: f32,
    new2: f32,
    /// Gradients below this magnitude add nothing to `v` (0: all do).
    tiny: f32,
    sqrt_bias_correction2: f32,
    eps: f32,
    /// `-lr / (1 - beta1^t)`.
    neg_step_size: f32,
}

impl Factors {
    /// Updates `m` and `v` in place from `g` (L2 decay already added).
    #[inline(always)]
    fn moments(&self, g: f32, m: &mut f32, v: &mut f32) {
        // torch.lerp: start + w * (end - start) for |w| < 0.5, else
        // end - (end - start) * (1 - w); the branch is the same for every
        // element, so it costs nothing in the loop.
        *m = if self.new1.abs() < 0.5 {
            *m + self.new1 * (g - *m)
        } else {
            g - (g - *m) * (1.0 - self.new1)
        };
        let g2 = if g.abs() < self.tiny { 0.0 } else { g * g };
        *v = *v * self.keep2 + self.new2 * g2;
    }

    /// `p + (-step_size) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)`.
    #[inline(always)]
    fn apply(&self, p: f32, m: f32, v: f32) -> f32 {
        let denom = v.sqrt() / self.sqrt_bias_correction2 + self.eps;
        p + self.neg_step_size * m / denom
    }
}

/// One Adam step over a parameter's elements.
/// Large parameters are split over the thread pool; every element is
/// independent, so the result does not depend on the split.
fn update(p: &mut [f32], g: &[f32], slot: &mut Slot, f: &Factors) {
    let params = p.par_chunks_mut(PARALLEL_CHUNK).zip(g.par_chunks(PARALLEL_CHUNK));
    let moments = slot.m.par_chunks_mut(PARALLEL_CHUNK).zip(slot.v.par_chunks_mut(PARALLEL_CHUNK));
    params.zip(moments).for_each(|((p, g), (m, v))| {
        // Square roots and divisions: worth the widest vectors.
        widest(
            #[inline(always)]
            || {
                for ((p, &g), (m, v)) in p.iter_mut().zip(g).zip(m.iter_mut().zip(v.iter_mut())) {
                    let g = g + f.l2 * *p;
                    f.moments(g, m, v);
                    *p = f.apply(*p, *m, *v);
                }
            },
        )
    });
}

/// Elements per task when a parameter's update is split over threads.
const PARALLEL_CHUNK: usize = 1 << 15;

/// One AMSGrad step: the denominator uses the running maximum of `v`.
fn update_amsgrad(p: &mut [f32], g: &[f32], slot: &mut Slot, f: &Factors) {
    let moments = slot.m.iter_mut().zip(slot.v.iter_mut()).zip(slot.v_max.iter_mut());
    for ((p, &g), ((m, v), v_max)) in p.iter_mut().zip(g).zip(moments) {
        let g = g + f.l2 * *p;
        f.moments(g, m, v);
        *v_max = v_max.max(*v);
        *p = f.apply(*p, *m, *v_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    fn params() -> Vec<Param> {
        let mut w = Param::new(Tensor::from_vec(&[2, 2], vec![1.0, -2.0, 0.5, 0.0]).unwrap());
        w.grad = Tensor::from_vec(&[2, 2], vec![0.5, 0.25, -1.0, 2.0]).unwrap();
        let mut b = Param::new(Tensor::from_vec(&[3], vec![0.0, 1.0, 2.0]).unwrap());
        b.grad = Tensor::from_vec(&[3], vec![1.0, 1.0, -1.0]).unwrap();
        vec![w, b]
    }

    fn adam(kind: OptimizerKind, amsgrad: bool) -> Adam {
        let config = OptimizerConfig { lr: 0.01, amsgrad, ..OptimizerConfig::new(kind) };
        config.build_adam().unwrap()
    }

    #[test]
    fn first_step_moves_by_lr_times_sign() {
        let mut params = params();
        let before: Vec<f32> = params[0].value.data().to_vec();
        adam(OptimizerKind::Adam, false).step(&mut params.iter_mut());
        for ((&p, &p0), &g) in params[0].value.data().iter().zip(&before).zip(params[0].grad.data())
        {
            assert!((p - (p0 - 0.01 * g.signum())).abs() < 1e-6, "{p} from {p0} with grad {g}");
        }
    }

    #[test]
    fn a_subnormal_squared_gradient_is_dropped_only_when_eps_hides_it() {
        let tiny = |eps: f64| {
            let mut params = [Param::new(Tensor::from_vec(&[1], vec![1.0]).unwrap())];
            params[0].grad = Tensor::from_vec(&[1], vec![1e-20]).unwrap();
            let config =
                OptimizerConfig { lr: 0.01, eps, ..OptimizerConfig::new(OptimizerKind::Adam) };
            let mut opt = config.build_adam().unwrap();
            opt.step(&mut params.iter_mut());
            (params[0].value.data()[0], opt.exp_avg_sq(0).unwrap()[0])
        };

        // eps 1e-8: v stays 0 and the step is lr · 1e-20 / 1e-8, nothing.
        assert_eq!(tiny(1e-8), (1.0, 0.0));

        // eps 0: v is the subnormal 1e-43 and the step is lr, as in PyTorch.
        let (p, v) = tiny(0.0);
        assert!(v > 0.0 && v < f32::MIN_POSITIVE, "v = {v}");
        assert!((p - 0.99).abs() < 1e-3, "p = {p}");
    }

    #[test]
    fn state_is_created_once() {
        let mut params = params();
        let mut opt = adam(OptimizerKind::AdamW, true);
        opt.step(&mut params.iter_mut());
        let ptrs = |opt: &Adam| -> Vec<_> {
            let slots = opt.slots.iter();
            slots.flat_map(|s| [&s.m, &s.v, &s.v_max]).map(|b| (b.as_ptr(), b.capacity())).collect()
        };
        let first = ptrs(&opt);
        let outer = (opt.slots.as_ptr(), opt.slots.capacity());
        for _ in 0..4 {
            opt.step(&mut params.iter_mut());
        }
        assert_eq!(first, ptrs(&opt));
        assert_eq!(outer, (opt.slots.as_ptr(), opt.slots.capacity()));
        assert_eq!(opt.step_count(1), 5);
        assert_eq!(opt.step_count(2), 0);
    }

    #[test]
    fn max_exp_avg_sq_only_with_amsgrad() {
        let mut params = params();
        let mut opt = adam(OptimizerKind::Adam, false);
        opt.step(&mut params.iter_mut());
        assert!(opt.max_exp_avg_sq(0).is_none());
        assert_eq!(opt.exp_avg(1).map(<[f32]>::len), Some(3));
    }

    #[test]
    fn set_momentum_sets_beta1() {
        let mut opt = adam(OptimizerKind::Adam, false);
        opt.set_momentum(0.85);
        assert_eq!(opt.momentum(), Some(0.85));
    }

    #[test]
    #[should_panic(expected = "changed size")]
    fn a_resized_parameter_is_an_invariant_failure() {
        let mut params = params();
        let mut opt = adam(OptimizerKind::Adam, false);
        opt.step(&mut params.iter_mut());
        params[0] = Param::new(Tensor::zeros(&[5]));
        opt.step(&mut params.iter_mut());
    }
}
