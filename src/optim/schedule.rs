//! Learning rate schedules as pure functions of the scheduler step `k`
//! (the number of `scheduler.step()` calls PyTorch would have made), with
//! PyTorch's formulas: StepLR, CosineAnnealingLR, OneCycleLR, and a constant.
//! See <https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate>.

use super::Optimizer;
use crate::{Error, Result};
use std::f64::consts::PI;

/// The schedule names [`Schedule::parse`] accepts.
const KNOWN: &str = "constant, step, cosine, onecycle";

/// A learning rate schedule, evaluated at scheduler step `k`.
///
/// `lr_at(0)` is the rate of the first optimiser step; the caller applies
/// `lr_at(k)` (and `momentum_at(k)`) before optimiser step `k + 1`, which is
/// what [`Schedule::apply`] does. Whether `k` counts batches or epochs is the
/// caller's choice; [`OneCycle`] expects one scheduler step per batch.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The same rate at every step.
    Constant {
        /// The rate.
        lr: f64,
    },
    /// `StepLR`: `base_lr * gamma^floor(k / step_size)`.
    Step {
        /// The rate before the first decay.
        base_lr: f64,
        /// Steps between decays, >= 1.
        step_size: usize,
        /// Factor of each decay, > 0.
        gamma: f64,
    },
    /// `CosineAnnealingLR`:
    /// `eta_min + (base_lr - eta_min) * (1 + cos(pi * k / t_max)) / 2`.
    /// Past `t_max` the rate rises again (period `2 * t_max`), as PyTorch's.
    Cosine {
        /// The rate at step 0.
        base_lr: f64,
        /// Steps from `base_lr` down to `eta_min`, >= 1.
        t_max: usize,
        /// The lowest rate, reached at `t_max`.
        eta_min: f64,
    },
    /// `OneCycleLR`, which also cycles the momentum.
    OneCycle(OneCycle),
}

impl Schedule {
    /// Parses a schedule from its command-line form. `base_lr` is the
    /// optimiser's learning rate and `total_steps` the number of scheduler
    /// steps in the run; both fill defaults.
    ///
    /// | spec | schedule |
    /// |---|---|
    /// | `constant` | `base_lr` throughout |
    /// | `step:STEP_SIZE[:GAMMA]` | StepLR; `GAMMA` defaults to 0.1 |
    /// | `cosine[:ETA_MIN]` | CosineAnnealingLR, `T_max = total_steps`, `ETA_MIN` 0 by default |
    /// | `onecycle[:KEY=VALUE]...` | OneCycleLR over `total_steps`, peak `base_lr` |
    ///
    /// OneCycle keys, with PyTorch's defaults: `max_lr` (`base_lr`),
    /// `pct_start` (0.3), `anneal` (`cos` or `linear`; `cos`), `div_factor`
    /// (25), `final_div_factor` (1e4), `three_phase` (false),
    /// `cycle_momentum` (true), `base_momentum` (0.85), `max_momentum` (0.95).
    /// For example `step:30:0.1`, `cosine:1e-5`,
    /// `onecycle:pct_start=0.25:anneal=linear`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the spec and the part that does not
    /// parse or is out of range (see [`Schedule::validate`]).
    pub fn parse(spec: &str, base_lr: f64, total_steps: usize) -> Result<Schedule> {
        // Split the name from its arguments.
        let mut parts = spec.split(':');
        let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let args: Vec<&str> = parts.map(str::trim).collect();
        let bad = |detail: String| Error::arg(format!("schedule {spec:?}: {detail}"));
        let max_args = match name.as_str() {
            "constant" => 0,
            "step" => 2,
            "cosine" => 1,
            "onecycle" => usize::MAX,
            _ => return Err(bad(format!("unknown schedule (known: {KNOWN})"))),
        };
        if args.len() > max_args {
            return Err(bad(format!("{name} takes at most {max_args} arguments")));
        }

        // Fill the schedule from the arguments and the defaults.
        let schedule = match name.as_str() {
            "constant" => Schedule::Constant { lr: base_lr },
            "step" => {
                let size = args.first().ok_or_else(|| bad("step needs a step size".into()))?;
                let not_whole = || bad(format!("step size {size:?} is not a whole number"));
                let step_size = size.parse().map_err(|_| not_whole())?;
                let gamma = args.get(1).map_or(Ok(0.1), |v| parse_f64(v, "gamma").map_err(bad))?;
                Schedule::Step { base_lr, step_size, gamma }
            }
            "cosine" => {
                let eta_min =
                    args.first().map_or(Ok(0.0), |v| parse_f64(v, "eta_min").map_err(bad))?;
                Schedule::Cosine { base_lr, t_max: total_steps, eta_min }
            }
            _ => {
                let mut one_cycle = OneCycle::new(base_lr, total_steps);
                for arg in &args {
                    one_cycle.set(arg).map_err(bad)?;
                }
                Schedule::OneCycle(one_cycle)
            }
        };
        schedule.validate().map_err(|e| bad(e.to_string()))?;
        Ok(schedule)
    }

    /// Whether `spec` is refused for a run of `total_steps` only because
    /// the run is too short: it parses for a long enough run. A onecycle
    /// whose phases cannot fit into a few steps is; a bad key or value,
    /// which no run length fixes, is not.
    pub fn too_short(spec: &str, base_lr: f64, total_steps: usize) -> bool {
        // 2⁴⁰ steps: longer than any run, and exact in the f64 phase ends.
        const LONG_RUN: usize = 1 << 40;
        let fails = Schedule::parse(spec, base_lr, total_steps).is_err();
        fails && total_steps < LONG_RUN && Schedule::parse(spec, base_lr, LONG_RUN).is_ok()
    }

    /// Checks the schedule's parameters.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the parameter and its value.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Schedule::Constant { lr } => positive("lr", lr),
            Schedule::Step { base_lr, step_size, gamma } => {
                positive("lr", base_lr)?;
                positive("gamma", gamma)?;
                at_least_one("step size", step_size)
            }
            Schedule::Cosine { base_lr, t_max, eta_min } => {
                positive("lr", base_lr)?;
                if !(eta_min.is_finite() && eta_min >= 0.0) {
                    return Err(Error::arg(format!("eta_min {eta_min} must be finite and >= 0")));
                }
                at_least_one("t_max", t_max)
            }
            Schedule::OneCycle(ref one_cycle) => one_cycle.validate(),
        }
    }

    /// The learning rate after `step` scheduler steps.
    pub fn lr_at(&self, step: usize) -> f64 {
        match *self {
            Schedule::Constant { lr } => lr,
            Schedule::Step { base_lr, step_size, gamma } => {
                // PyTorch multiplies the current rate by gamma at each decay;
                // repeating that product gives its exact values.
                let decays = step.checked_div(step_size).unwrap_or(0);
                (0..decays).fold(base_lr, |lr, _| lr * gamma)
            }
            Schedule::Cosine { base_lr, t_max, eta_min } => {
                let cos = (PI * step as f64 / t_max as f64).cos();
                eta_min + (base_lr - eta_min) * (1.0 + cos) / 2.0
            }
            Schedule::OneCycle(ref one_cycle) => one_cycle.at(step).0,
        }
    }

    /// The momentum (SGD `momentum`, Adam `beta1`) after `step` scheduler
    /// steps; `None` when the schedule leaves momentum alone.
    pub fn momentum_at(&self, step: usize) -> Option<f64> {
        match self {
            Schedule::OneCycle(one_cycle) if one_cycle.cycle_momentum => Some(one_cycle.at(step).1),
            _ => None,
        }
    }

    /// Sets `optimizer`'s rate (and momentum, where the schedule cycles it)
    /// for the step that follows scheduler step `step`.
    pub fn apply(&self, step: usize, optimizer: &mut dyn Optimizer) {
        optimizer.set_lr(self.lr_at(step));
        if let Some(momentum) = self.momentum_at(step) {
            optimizer.set_momentum(momentum);
        }
    }
}

/// How OneCycle moves between the ends of a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Anneal {
    /// Half a cosine: `end + (start - end) / 2 * (1 + cos(pi * pct))`.
    Cos,
    /// A straight line: `start + (end - start) * pct`.
    Linear,
}

impl Anneal {
    /// The value a fraction `pct` of the way from `start` to `end`.
    fn at(self, start: f64, end: f64, pct: f64) -> f64 {
        match self {
            Anneal::Cos => end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0),
            Anneal::Linear => (end - start) * pct + start,
        }
    }
}

/// PyTorch's `OneCycleLR`: the rate climbs from `max_lr / div_factor` to
/// `max_lr` over the first `pct_start` of the steps, then falls to
/// `max_lr / div_factor / final_div_factor` at step `total_steps - 1`
/// (three-phase: back to the start first, then down to the minimum). With
/// `cycle_momentum` the momentum moves the other way between `max_momentum`
/// and `base_momentum`.
///
/// Step `total_steps`, which PyTorch still allows but no optimiser step uses,
/// continues the last phase's curve.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OneCycle {
    /// The peak rate.
    pub max_lr: f64,
    /// Optimiser steps in the cycle, one scheduler step each.
    pub total_steps: usize,
    /// Fraction of the steps spent climbing.
    pub pct_start: f64,
    /// The curve between phase ends.
    pub anneal: Anneal,
    /// The rate starts at `max_lr / div_factor`.
    pub div_factor: f64,
    /// The rate ends at `max_lr / div_factor / final_div_factor`.
    pub final_div_factor: f64,
    /// Climb, descend to the start, then anneal to the minimum.
    pub three_phase: bool,
    /// Also cycle the momentum inversely to the rate.
    pub cycle_momentum: bool,
    /// Momentum at the peak rate.
    pub base_momentum: f64,
    /// Momentum at the lowest rates.
    pub max_momentum: f64,
}

/// One phase of a OneCycle: it ends at `end_step` (a float, as PyTorch
/// computes it) and moves rate and momentum between these ends.
#[derive(Clone, Copy, Debug, Default)]
struct Phase {
    end_step: f64,
    lr: (f64, f64),
    momentum: (f64, f64),
}

impl OneCycle {
    /// PyTorch's defaults for a cycle of `total_steps` peaking at `max_lr`.
    pub fn new(max_lr: f64, total_steps: usize) -> OneCycle {
        OneCycle {
            max_lr,
            total_steps,
            pct_start: 0.3,
            anneal: Anneal::Cos,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
            cycle_momentum: true,
            base_momentum: 0.85,
            max_momentum: 0.95,
        }
    }

    /// Checks the parameters and that every phase spans a positive number
    /// of steps (PyTorch divides by zero otherwise).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the parameter and its value.
    pub fn validate(&self) -> Result<()> {
        // Plain ranges.
        positive("max_lr", self.max_lr)?;
        positive("div_factor", self.div_factor)?;
        positive("final_div_factor", self.final_div_factor)?;
        at_least_one("total_steps", self.total_steps)?;
        if !(0.0..=1.0).contains(&self.pct_start) {
            return Err(Error::arg(format!("pct_start {} must be in [0, 1]", self.pct_start)));
        }
        for (name, momentum) in
            [("base_momentum", self.base_momentum), ("max_momentum", self.max_momentum)]
        {
            if !(0.0..1.0).contains(&momentum) {
                return Err(Error::arg(format!("{name} {momentum} must be in [0, 1)")));
            }
        }

        // Phase lengths.
        let mut start = 0.0;
        for end in self.phase_end_steps() {
            if end <= start {
                return Err(Error::arg(format!(
                    "onecycle over {} step(s) with pct_start {}: a phase would end at step \
                     {end:.2}, not after its start {start:.2}; use more steps or another \
                     pct_start",
                    self.total_steps, self.pct_start
                )));
            }
            start = end;
        }
        Ok(())
    }

    /// The step at which each phase ends, as PyTorch computes them:
    /// `pct_start * total_steps - 1` and `total_steps - 1`; three-phase
    /// inserts `2 * pct_start * total_steps - 2` between them.
    pub fn phase_end_steps(&self) -> Vec<f64> {
        let (phases, count) = self.phases();
        phases[..count].iter().map(|phase| phase.end_step).collect()
    }

    /// The phases and how many of the three are used.
    fn phases(&self) -> ([Phase; 3], usize) {
        let initial_lr = self.max_lr / self.div_factor;
        let min_lr = initial_lr / self.final_div_factor;
        let total = self.total_steps as f64;
        let (low_m, high_m) = (self.base_momentum, self.max_momentum);
        let climb = Phase {
            end_step: self.pct_start * total - 1.0,
            lr: (initial_lr, self.max_lr),
            momentum: (high_m, low_m),
        };
        if self.three_phase {
            let descend = Phase {
                end_step: 2.0 * self.pct_start * total - 2.0,
                lr: (self.max_lr, initial_lr),
                momentum: (low_m, high_m),
            };
            let anneal = Phase {
                end_step: total - 1.0,
                lr: (initial_lr, min_lr),
                momentum: (high_m, high_m),
            };
            ([climb, descend, anneal], 3)
        } else {
            let anneal = Phase {
                end_step: total - 1.0,
                lr: (self.max_lr, min_lr),
                momentum: (low_m, high_m),
            };
            ([climb, anneal, Phase::default()], 2)
        }
    }

    /// Rate and momentum after `step` scheduler steps: the first phase whose
    /// end is not before `step`, or the last phase, extrapolated.
    fn at(&self, step: usize) -> (f64, f64) {
        let (phases, count) = self.phases();
        let k = step as f64;
        let mut start = 0.0;
        for (i, phase) in phases[..count].iter().enumerate() {
            if k <= phase.end_step || i == count - 1 {
                let pct = (k - start) / (phase.end_step - start);
                let lr = self.anneal.at(phase.lr.0, phase.lr.1, pct);
                let momentum = self.anneal.at(phase.momentum.0, phase.momentum.1, pct);
                return (lr, momentum);
            }
            start = phase.end_step;
        }
        unreachable!("the loop returns at the last phase")
    }

    /// Applies one `KEY=VALUE` argument of the command-line form.
    fn set(&mut self, arg: &str) -> std::result::Result<(), String> {
        let (key, value) =
            arg.split_once('=').ok_or_else(|| format!("{arg:?} is not key=value"))?;
        let (key, value) = (key.trim(), value.trim());
        match key {
            "max_lr" => self.max_lr = parse_f64(value, key)?,
            "pct_start" => self.pct_start = parse_f64(value, key)?,
            "div_factor" => self.div_factor = parse_f64(value, key)?,
            "final_div_factor" => self.final_div_factor = parse_f64(value, key)?,
            "base_momentum" => self.base_momentum = parse_f64(value, key)?,
            "max_momentum" => self.max_momentum = parse_f64(value, key)?,
            "three_phase" => self.three_phase = parse_bool(value, key)?,
            "cycle_momentum" => self.cycle_momentum = parse_bool(value, key)?,
            "anneal" => {
                self.anneal = match value {
                    "cos" => Anneal::Cos,
                    "linear" => Anneal::Linear,
                    _ => return Err(format!("anneal {value:?} (expected cos or linear)")),
                }
            }
            _ => {
                return Err(format!(
                    "unknown onecycle key {key:?} (known: max_lr, pct_start, anneal, \
                     div_factor, final_div_factor, three_phase, cycle_momentum, base_momentum, \
                     max_momentum)"
                ))
            }
        }
        Ok(())
    }
}

/// A number argument, or a message naming it.
fn parse_f64(value: &str, name: &str) -> std::result::Result<f64, String> {
    value.parse().map_err(|_| format!("{name} {value:?} is not a number"))
}

/// `true` or `false`, or a message naming the argument.
fn parse_bool(value: &str, name: &str) -> std::result::Result<bool, String> {
    value.parse().map_err(|_| format!("{name} {value:?} is not true or false"))
}

/// Fails unless `value` is finite and > 0.
fn positive(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        return Ok(());
    }
    Err(Error::arg(format!("{name} {value} must be finite and > 0")))
}

/// Fails unless `value` >= 1.
fn at_least_one(name: &str, value: usize) -> Result<()> {
    if value >= 1 {
        return Ok(());
    }
    Err(Error::arg(format!("{name} {value} must be at least 1")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_fills_defaults() {
        assert_eq!(Schedule::parse("constant", 0.1, 10).unwrap(), Schedule::Constant { lr: 0.1 });
        assert_eq!(
            Schedule::parse("step:30", 0.1, 100).unwrap(),
            Schedule::Step { base_lr: 0.1, step_size: 30, gamma: 0.1 }
        );
        assert_eq!(
            Schedule::parse("step:5:0.5", 0.1, 100).unwrap(),
            Schedule::Step { base_lr: 0.1, step_size: 5, gamma: 0.5 }
        );
        assert_eq!(
            Schedule::parse("Cosine", 0.1, 100).unwrap(),
            Schedule::Cosine { base_lr: 0.1, t_max: 100, eta_min: 0.0 }
        );
        assert_eq!(
            Schedule::parse("onecycle", 0.1, 100).unwrap(),
            Schedule::OneCycle(OneCycle::new(0.1, 100))
        );
    }

    #[test]
    fn parse_onecycle_keys() {
        let spec = "onecycle:max_lr=0.5:pct_start=0.25:anneal=linear:three_phase=true:\
                    cycle_momentum=false:div_factor=10:final_div_factor=100:\
                    base_momentum=0.8:max_momentum=0.9";
        let Schedule::OneCycle(one_cycle) = Schedule::parse(spec, 0.1, 100).unwrap() else {
            panic!("not a onecycle schedule");
        };
        let want = OneCycle {
            max_lr: 0.5,
            total_steps: 100,
            pct_start: 0.25,
            anneal: Anneal::Linear,
            div_factor: 10.0,
            final_div_factor: 100.0,
            three_phase: true,
            cycle_momentum: false,
            base_momentum: 0.8,
            max_momentum: 0.9,
        };
        assert_eq!(one_cycle, want);
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let cases = [
            ("warmup", "unknown schedule"),
            ("step", "needs a step size"),
            ("step:x", "step size \"x\""),
            ("step:0", "step size 0"),
            ("step:3:-1", "gamma -1"),
            ("step:3:0.1:2", "at most 2"),
            ("constant:1", "at most 0"),
            ("cosine:abc", "eta_min \"abc\""),
            ("onecycle:pct_start", "not key=value"),
            ("onecycle:warm=1", "unknown onecycle key"),
            ("onecycle:anneal=exp", "cos or linear"),
            ("onecycle:three_phase=yes", "true or false"),
            ("onecycle:pct_start=1.5", "pct_start 1.5"),
            ("onecycle:max_momentum=1", "max_momentum 1"),
        ];
        for (spec, want) in cases {
            let err = Schedule::parse(spec, 0.1, 100).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains(spec), "{spec}: {err}");
        }
    }

    #[test]
    fn onecycle_phases_must_be_long_enough() {
        // pct_start * total_steps = 1 puts the end of the climb at step 0.
        let err = Schedule::parse("onecycle:pct_start=0.1", 0.1, 10).unwrap_err().to_string();
        assert!(err.contains("phase would end at step 0"), "{err}");
        assert!(Schedule::parse("onecycle", 0.1, 1).is_err());
        assert!(Schedule::parse("onecycle:pct_start=0.5:three_phase=true", 0.1, 10).is_ok());
    }

    #[test]
    fn too_short_is_only_about_the_run_length() {
        // Onecycle needs 4 steps for its default phases, and pct_start=0.1 40.
        assert!(Schedule::too_short("onecycle", 0.1, 2));
        assert!(Schedule::too_short("onecycle", 0.1, 3));
        assert!(!Schedule::too_short("onecycle", 0.1, 4));
        assert!(Schedule::too_short("onecycle:pct_start=0.1", 0.1, 10));
        // Values no run length makes right.
        for spec in ["step:0", "cosine:-1", "onecycle:pct_start=2", "onecycle:foo=1", "warmup"] {
            assert!(!Schedule::too_short(spec, 0.1, 2), "{spec}");
        }
        assert!(!Schedule::too_short("onecycle:pct_start=0", 0.1, 2));
    }

    #[test]
    fn apply_sets_lr_and_momentum() {
        let config = crate::optim::OptimizerConfig { momentum: 0.9, ..Default::default() };
        let mut opt = config.build().unwrap();
        let schedule = Schedule::parse("onecycle", 0.1, 10).unwrap();
        schedule.apply(0, opt.as_mut());
        assert!((opt.lr() - 0.004).abs() < 1e-15);
        assert_eq!(opt.momentum(), Some(0.95));
        Schedule::Constant { lr: 0.5 }.apply(3, opt.as_mut());
        assert_eq!((opt.lr(), opt.momentum()), (0.5, Some(0.95)));
    }
}
