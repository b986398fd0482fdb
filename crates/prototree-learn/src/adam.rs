//! Adam / AdamW matching PyTorch's `AdamW` update. The optimiser ([`Adam`]: variables and
//! hyper-parameters) is kept apart from its state ([`AdamState`]: moments and step
//! count), which lives in the learner's state and is what checkpoints save.

use std::collections::BTreeMap;
use std::collections::HashMap;

use candle_core::{backprop::GradStore, Tensor, Var};
use prototree_tree::ValidTrainConfig;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Hyper-parameters of one Adam instance (one parameter group).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon (the reference uses 1e-7).
    pub eps: f64,
    /// Decoupled weight decay (AdamW); 0 gives plain Adam.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            weight_decay: 0.0,
        }
    }
}

impl AdamConfig {
    /// The Adam hyper-parameters of a schedule (`adam_eps`, `weight_decay`).
    pub fn of_schedule(schedule: &ValidTrainConfig) -> Self {
        Self {
            eps: schedule.config().adam_eps,
            weight_decay: schedule.config().weight_decay,
            ..Self::default()
        }
    }
}

/// The first and second moment of one variable.
#[derive(Debug, Clone)]
pub struct Moments {
    /// Running mean of the gradient (`exp_avg`).
    pub exp_avg: Tensor,
    /// Running mean of the squared gradient (`exp_avg_sq`).
    pub exp_avg_sq: Tensor,
}

/// The state of one Adam: moments by variable name and the number of steps taken.
#[derive(Debug, Clone, Default)]
pub struct AdamState {
    /// Steps taken.
    pub step: u64,
    /// Moments of every variable that has had a gradient.
    pub moments: BTreeMap<String, Moments>,
}

impl AdamState {
    /// The moments as named tensors `{prefix}.{var}.exp_avg` / `.exp_avg_sq`.
    pub fn named_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.moments.len());
        for (name, m) in &self.moments {
            out.push((format!("{prefix}.{name}.exp_avg"), m.exp_avg.clone()));
            out.push((format!("{prefix}.{name}.exp_avg_sq"), m.exp_avg_sq.clone()));
        }
        out
    }

    /// The state saved by [`AdamState::named_tensors`] under `prefix`, with `step` steps
    /// taken (a variable's moments are kept when both are present).
    pub fn from_named_tensors(prefix: &str, tensors: &HashMap<String, Tensor>, step: u64) -> Self {
        let mut moments = BTreeMap::new();
        let head = format!("{prefix}.");
        for (key, exp_avg) in tensors {
            let Some(name) = key
                .strip_prefix(&head)
                .and_then(|rest| rest.strip_suffix(".exp_avg"))
            else {
                continue;
            };
            if let Some(exp_avg_sq) = tensors.get(&format!("{head}{name}.exp_avg_sq")) {
                moments.insert(
                    name.to_string(),
                    Moments {
                        exp_avg: exp_avg.clone(),
                        exp_avg_sq: exp_avg_sq.clone(),
                    },
                );
            }
        }
        Self { step, moments }
    }
}

/// Adam over a named set of variables.
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    vars: Vec<(String, Var)>,
}

impl Adam {
    /// An optimiser over `vars` (name, variable).
    pub fn new(vars: Vec<(String, Var)>, config: AdamConfig) -> Self {
        Self { config, vars }
    }

    /// Names of the optimised variables.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|(n, _)| n.as_str())
    }

    /// The name of the first variable whose gradient in `grads` holds a NaN or an
    /// infinity, if any.
    pub fn non_finite_gradient(&self, grads: &GradStore) -> Result<Option<String>> {
        for (name, var) in &self.vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                let total = g
                    .sum_all()?
                    .to_dtype(candle_core::DType::F64)?
                    .to_scalar::<f64>()?;
                if !total.is_finite() {
                    return Ok(Some(name.clone()));
                }
            }
        }
        Ok(None)
    }

    /// One update with learning rate `lr` from the gradients in `grads`, advancing
    /// `state`; variables without a gradient are left alone.
    pub fn step(&self, state: &mut AdamState, grads: &GradStore, lr: f64) -> Result<()> {
        state.step += 1;
        let t = state.step as i32;
        let c = self.config;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        for (name, var) in &self.vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let old = state.moments.get(name);
            let m = match old {
                Some(o) => ((&o.exp_avg * c.beta1)? + (g * (1.0 - c.beta1))?)?,
                None => (g * (1.0 - c.beta1))?,
            };
            let v = match old {
                Some(o) => ((&o.exp_avg_sq * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?,
                None => (g.sqr()? * (1.0 - c.beta2))?,
            };
            let theta = var.as_tensor().detach();
            let theta = if c.weight_decay > 0.0 {
                (theta * (1.0 - lr * c.weight_decay))?
            } else {
                theta
            };
            let denom = ((&v / bias2)?.sqrt()? + c.eps)?;
            let update = ((&m / bias1)? / denom)?;
            var.set(&(theta - (update * lr)?)?)?;
            state.moments.insert(
                name.clone(),
                Moments {
                    exp_avg: m,
                    exp_avg_sq: v,
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn first_step_moves_by_lr_times_sign() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let x = Var::new(&[1f32, -2.0], &dev)?;
        let loss = (x.as_tensor().sqr()?.sum_all()? * 0.5)?; // grad = x
        let grads = loss.backward()?;
        let opt = Adam::new(vec![("x".into(), x.clone())], AdamConfig::default());
        let mut state = AdamState::default();
        opt.step(&mut state, &grads, 0.1)?;
        let v = x.as_tensor().to_vec1::<f32>()?;
        // m̂ = g, v̂ = g², update = g/|g| = sign(g)
        assert!(
            (v[0] - 0.9).abs() < 1e-5 && (v[1] + 1.9).abs() < 1e-5,
            "{v:?}"
        );
        assert_eq!(state.step, 1);
        let named = state.named_tensors("opt");
        assert_eq!(named.len(), 2);
        let back = AdamState::from_named_tensors("opt", &named.into_iter().collect(), 1);
        assert_eq!(back.moments.len(), 1);
        Ok(())
    }
}
