//! Adam / AdamW with an inspectable state (moments and step), so training can be
//! checkpointed and resumed exactly. Matches PyTorch's `AdamW` update.

use candle_core::{backprop::GradStore, Tensor, Var};
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

/// Adam over a named set of variables.
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    vars: Vec<(String, Var)>,
    first: Vec<Option<Tensor>>,
    second: Vec<Option<Tensor>>,
    step: u64,
}

impl Adam {
    /// An optimiser over `vars` (name, variable).
    pub fn new(vars: Vec<(String, Var)>, config: AdamConfig) -> Self {
        let n = vars.len();
        Self {
            config,
            vars,
            first: vec![None; n],
            second: vec![None; n],
            step: 0,
        }
    }

    /// Names of the optimised variables.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|(n, _)| n.as_str())
    }

    /// Number of steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
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

    /// One update with learning rate `lr` from the gradients in `grads`; variables
    /// without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let c = self.config;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let m = match &self.first[i] {
                Some(m) => ((m * c.beta1)? + (g * (1.0 - c.beta1))?)?,
                None => (g * (1.0 - c.beta1))?,
            };
            let v = match &self.second[i] {
                Some(v) => ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?,
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
            self.first[i] = Some(m);
            self.second[i] = Some(v);
        }
        Ok(())
    }

    /// The optimiser state as named tensors (`{prefix}.{var}.exp_avg` / `.exp_avg_sq`) and
    /// the step count.
    pub fn state(&self, prefix: &str) -> (Vec<(String, Tensor)>, u64) {
        let mut out = Vec::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            if let Some(m) = &self.first[i] {
                out.push((format!("{prefix}.{name}.exp_avg"), m.clone()));
            }
            if let Some(v) = &self.second[i] {
                out.push((format!("{prefix}.{name}.exp_avg_sq"), v.clone()));
            }
        }
        (out, self.step)
    }

    /// Restores a state saved by [`Adam::state`].
    pub fn restore(
        &mut self,
        prefix: &str,
        tensors: &std::collections::HashMap<String, Tensor>,
        step: u64,
    ) {
        self.step = step;
        for (i, (name, _)) in self.vars.iter().enumerate() {
            self.first[i] = tensors.get(&format!("{prefix}.{name}.exp_avg")).cloned();
            self.second[i] = tensors.get(&format!("{prefix}.{name}.exp_avg_sq")).cloned();
        }
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
        let mut opt = Adam::new(vec![("x".into(), x.clone())], AdamConfig::default());
        opt.step(&grads, 0.1)?;
        let v = x.as_tensor().to_vec1::<f32>()?;
        // m̂ = g, v̂ = g², update = g/|g| = sign(g)
        assert!(
            (v[0] - 0.9).abs() < 1e-5 && (v[1] + 1.9).abs() < 1e-5,
            "{v:?}"
        );
        let (state, step) = opt.state("opt");
        assert_eq!(step, 1);
        assert_eq!(state.len(), 2);
        Ok(())
    }
}
