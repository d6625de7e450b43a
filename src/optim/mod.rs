//! Optimisers with PyTorch's update rules (SGD with momentum, dampening,
//! Nesterov and weight decay; Adam and AdamW with amsgrad) and the learning
//! rate schedules that drive them.
//!
//! Parameters arrive as [`Param`]s in the same order every step; each
//! optimiser keeps its state (momentum buffers, `m`, `v`) by position, creates
//! it on the first step and never allocates afterwards. Updates run in `f32`;
//! scalar factors such as bias corrections are computed in `f64`, as PyTorch
//! computes them in Python floats.

mod adam;
mod schedule;
mod sgd;

pub use adam::Adam;
pub use schedule::{Anneal, OneCycle, Schedule};
pub use sgd::Sgd;

use crate::nn::Param;
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Updates parameters from their gradients.
///
/// A learning rate schedule drives an optimiser through [`Optimizer::set_lr`]
/// and, for one-cycle schedules, [`Optimizer::set_momentum`].
pub trait Optimizer: Send {
    /// One update of every parameter from its `grad`. Parameters come in the
    /// same order every step; state (momentum buffers, m, v) is kept by
    /// position and created lazily on the first step.
    ///
    /// # Panics
    ///
    /// When a parameter's size differs from the one seen at the same position
    /// on an earlier step, or its gradient's size differs from its own.
    fn step(&mut self, params: &mut dyn Iterator<Item = &mut Param>);

    /// The learning rate the next step uses.
    fn lr(&self) -> f64;

    /// Sets the learning rate for the following steps.
    fn set_lr(&mut self, lr: f64);

    /// SGD momentum or Adam beta1 (what OneCycleLR cycles); None when not
    /// applicable.
    fn momentum(&self) -> Option<f64>;

    /// Sets SGD momentum or Adam beta1 for the following steps.
    fn set_momentum(&mut self, momentum: f64);
}

/// Which optimiser to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `torch.optim.SGD`: momentum, dampening, Nesterov, L2 weight decay.
    Sgd,
    /// `torch.optim.Adam`: weight decay is an L2 term added to the gradient.
    Adam,
    /// `torch.optim.AdamW`: weight decay shrinks the parameters directly.
    AdamW,
}

impl OptimizerKind {
    /// The name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OptimizerKind {
    type Err = Error;

    /// Parses `sgd`, `adam` or `adamw` (any case).
    fn from_str(s: &str) -> Result<OptimizerKind> {
        match s.to_ascii_lowercase().as_str() {
            "sgd" => Ok(OptimizerKind::Sgd),
            "adam" => Ok(OptimizerKind::Adam),
            "adamw" => Ok(OptimizerKind::AdamW),
            _ => Err(Error::arg(format!("unknown optimizer {s:?} (known: sgd, adam, adamw)"))),
        }
    }
}

/// Everything needed to build an optimiser, as the command line gives it.
///
/// Fields that do not apply to `kind` must keep their neutral values
/// (`momentum` 0, `dampening` 0, `nesterov` false for Adam and AdamW;
/// `amsgrad` false for SGD); [`OptimizerConfig::build`] refuses anything
/// else, so an option is never silently ignored. `betas` and `eps` are only
/// read by Adam and AdamW.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerConfig {
    /// Which optimiser.
    pub kind: OptimizerKind,
    /// Learning rate, > 0.
    pub lr: f64,
    /// SGD momentum, in `[0, 1)`.
    pub momentum: f64,
    /// SGD dampening, in `[0, 1]`; the first step is never dampened.
    pub dampening: f64,
    /// SGD Nesterov momentum; needs `momentum > 0` and `dampening == 0`.
    pub nesterov: bool,
    /// L2 penalty (SGD, Adam) or decoupled decay rate (AdamW), >= 0.
    pub weight_decay: f64,
    /// Adam's `(beta1, beta2)`, each in `[0, 1)`.
    pub betas: (f64, f64),
    /// Adam's term added to the denominator, >= 0.
    pub eps: f64,
    /// Adam's AMSGrad variant: divide by the running maximum of `v`.
    pub amsgrad: bool,
}

impl OptimizerConfig {
    /// PyTorch's defaults for `kind`: lr 1e-3, no momentum, betas
    /// (0.9, 0.999), eps 1e-8, and weight decay 0, except 1e-2 for AdamW.
    pub fn new(kind: OptimizerKind) -> OptimizerConfig {
        let weight_decay = if kind == OptimizerKind::AdamW { 1e-2 } else { 0.0 };
        OptimizerConfig {
            kind,
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay,
            betas: (0.9, 0.999),
            eps: 1e-8,
            amsgrad: false,
        }
    }

    /// Checks every field against its range and against `kind`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the option and its value.
    pub fn validate(&self) -> Result<()> {
        // Options shared by every kind.
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::arg(format!("learning rate {} must be finite and > 0", self.lr)));
        }
        check_range("weight decay", self.weight_decay, 0.0, f64::INFINITY, false)?;

        // SGD-only options.
        let sgd = self.kind == OptimizerKind::Sgd;
        check_range("momentum", self.momentum, 0.0, 1.0, false)?;
        check_range("dampening", self.dampening, 0.0, 1.0, true)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::arg(format!(
                "nesterov momentum requires momentum > 0 and dampening 0, found momentum {} \
                 and dampening {}",
                self.momentum, self.dampening
            )));
        }
        if !sgd && (self.momentum != 0.0 || self.dampening != 0.0 || self.nesterov) {
            return Err(Error::arg(format!(
                "momentum, dampening and nesterov apply to sgd only, not {} (found momentum {}, \
                 dampening {}, nesterov {}); {} uses betas",
                self.kind, self.momentum, self.dampening, self.nesterov, self.kind
            )));
        }

        // Adam-only options.
        check_range("beta1", self.betas.0, 0.0, 1.0, false)?;
        check_range("beta2", self.betas.1, 0.0, 1.0, false)?;
        check_range("eps", self.eps, 0.0, f64::INFINITY, false)?;
        if sgd && self.amsgrad {
            return Err(Error::arg("amsgrad applies to adam and adamw only, not sgd"));
        }
        Ok(())
    }

    /// A validated [`Sgd`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when a field is out of range or `kind` is
    /// not [`OptimizerKind::Sgd`].
    pub fn build_sgd(&self) -> Result<Sgd> {
        self.validate()?;
        if self.kind != OptimizerKind::Sgd {
            return Err(Error::arg(format!("expected an sgd config, found {}", self.kind)));
        }
        Ok(Sgd::new(self))
    }

    /// A validated [`Adam`] (decoupled weight decay for
    /// [`OptimizerKind::AdamW`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when a field is out of range or `kind` is
    /// [`OptimizerKind::Sgd`].
    pub fn build_adam(&self) -> Result<Adam> {
        self.validate()?;
        if self.kind == OptimizerKind::Sgd {
            return Err(Error::arg("expected an adam or adamw config, found sgd"));
        }
        Ok(Adam::new(self))
    }

    /// The optimiser this config describes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when a field is out of range (see
    /// [`OptimizerConfig::validate`]).
    pub fn build(&self) -> Result<Box<dyn Optimizer>> {
        Ok(match self.kind {
            OptimizerKind::Sgd => Box::new(self.build_sgd()?),
            OptimizerKind::Adam | OptimizerKind::AdamW => Box::new(self.build_adam()?),
        })
    }
}

impl Default for OptimizerConfig {
    /// PyTorch's SGD defaults (see [`OptimizerConfig::new`]).
    fn default() -> OptimizerConfig {
        OptimizerConfig::new(OptimizerKind::Sgd)
    }
}

/// Fails unless `lo <= value < hi` (`value <= hi` when `hi_inclusive`) and
/// `value` is finite.
fn check_range(name: &str, value: f64, lo: f64, hi: f64, hi_inclusive: bool) -> Result<()> {
    let below_hi = if hi_inclusive { value <= hi } else { value < hi };
    if value.is_finite() && value >= lo && below_hi {
        return Ok(());
    }
    let close = if hi_inclusive { "]" } else { ")" };
    Err(Error::arg(format!("{name} {value} must be finite and in [{lo}, {hi}{close}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(config: &OptimizerConfig) -> String {
        config.build().err().expect("config should be refused").to_string()
    }

    #[test]
    fn kind_parses_known_names_only() {
        assert_eq!("sgd".parse::<OptimizerKind>().unwrap(), OptimizerKind::Sgd);
        assert_eq!("Adam".parse::<OptimizerKind>().unwrap(), OptimizerKind::Adam);
        assert_eq!("adamw".parse::<OptimizerKind>().unwrap(), OptimizerKind::AdamW);
        let err = "rmsprop".parse::<OptimizerKind>().unwrap_err().to_string();
        assert!(err.contains("\"rmsprop\"") && err.contains("sgd, adam, adamw"), "{err}");
    }

    #[test]
    fn defaults_build() {
        for kind in [OptimizerKind::Sgd, OptimizerKind::Adam, OptimizerKind::AdamW] {
            let opt = OptimizerConfig::new(kind).build().unwrap();
            assert_eq!(opt.lr(), 1e-3);
        }
        assert_eq!(OptimizerConfig::new(OptimizerKind::AdamW).weight_decay, 1e-2);
        let adam = OptimizerConfig::new(OptimizerKind::Adam).build().unwrap();
        assert_eq!(adam.momentum(), Some(0.9));
    }

    #[test]
    fn learning_rate_must_be_positive_and_finite() {
        for lr in [0.0, -0.1, f64::NAN, f64::INFINITY] {
            let config = OptimizerConfig { lr, ..OptimizerConfig::default() };
            assert!(message(&config).contains("learning rate"), "lr {lr}");
        }
    }

    #[test]
    fn momentum_range() {
        for momentum in [-0.1, 1.0, 1.5, f64::NAN] {
            let config = OptimizerConfig { momentum, ..OptimizerConfig::default() };
            let err = message(&config);
            assert!(err.contains("momentum") && err.contains(&momentum.to_string()), "{err}");
        }
        let config = OptimizerConfig { momentum: 0.99, ..OptimizerConfig::default() };
        assert!(config.build().is_ok());
    }

    #[test]
    fn nesterov_needs_momentum_and_no_dampening() {
        let base = OptimizerConfig { nesterov: true, ..OptimizerConfig::default() };
        assert!(message(&base).contains("nesterov"));
        let damped = OptimizerConfig { momentum: 0.9, dampening: 0.1, ..base.clone() };
        assert!(message(&damped).contains("dampening 0.1"));
        assert!(OptimizerConfig { momentum: 0.9, ..base }.build().is_ok());
    }

    #[test]
    fn other_ranges() {
        let base = OptimizerConfig::default();
        let adam = OptimizerConfig::new(OptimizerKind::Adam);
        let cases = [
            (OptimizerConfig { weight_decay: -1e-4, ..base.clone() }, "weight decay"),
            (OptimizerConfig { dampening: 1.5, ..base.clone() }, "dampening"),
            (OptimizerConfig { betas: (1.0, 0.999), ..adam.clone() }, "beta1"),
            (OptimizerConfig { betas: (0.9, -0.5), ..adam.clone() }, "beta2"),
            (OptimizerConfig { eps: -1e-8, ..adam }, "eps"),
        ];
        for (config, name) in cases {
            let err = message(&config);
            assert!(err.starts_with(name), "{err}");
        }
    }

    #[test]
    fn options_of_the_other_kind_are_refused() {
        let adam = OptimizerConfig { momentum: 0.9, ..OptimizerConfig::new(OptimizerKind::Adam) };
        assert!(message(&adam).contains("sgd only"));
        let sgd = OptimizerConfig { amsgrad: true, ..OptimizerConfig::default() };
        assert!(message(&sgd).contains("amsgrad"));
        assert!(OptimizerConfig::default().build_adam().is_err());
        assert!(OptimizerConfig::new(OptimizerKind::AdamW).build_sgd().is_err());
    }
}
