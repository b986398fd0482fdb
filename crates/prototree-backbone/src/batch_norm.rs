//! The channels-last BatchNorm module (+ optional ReLU or ReLU6) of the backbones: its
//! parameters and running statistics under PyTorch's names, and the running-statistics
//! update exactly as candle's and PyTorch's (momentum-weighted, the variance unbiased,
//! `n / (n − 1)`). The arithmetic is `prototree_ops`' (fused on the CPU, generic elsewhere).

use candle_core::{Tensor, Var};
use candle_nn::{Init, VarBuilder};
pub use prototree_ops::Activation;

use crate::Result;

/// A BatchNorm over the last (channel) dimension, with an optional fused activation.
///
/// Parameters and running statistics are created through the `VarBuilder` under
/// PyTorch's names (`weight`, `bias`, `running_mean`, `running_var`).
#[derive(Debug, Clone)]
pub struct BatchNormNhwc {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNormNhwc {
    /// A BatchNorm of `c` channels with `eps` and `momentum` (PyTorch's meaning).
    pub fn new(c: usize, eps: f64, momentum: f64, vb: VarBuilder) -> Result<Self> {
        let running_mean = vb.get_with_hints(c, "running_mean", Init::Const(0.))?;
        let running_var = vb.get_with_hints(c, "running_var", Init::Const(1.))?;
        let weight = vb.get_with_hints(c, "weight", Init::Const(1.))?;
        let bias = vb.get_with_hints(c, "bias", Init::Const(0.))?;
        Ok(Self {
            weight,
            bias,
            // A variable's tensor gives a Var sharing its storage: updates reach the VarMap.
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            eps,
            momentum,
        })
    }

    /// Normalises `x` over all but its last dimension, then applies `activation`.
    ///
    /// `train`: batch statistics, and the running statistics updated; otherwise the
    /// running statistics.
    ///
    /// # Shapes
    /// - `x`: `(…, c)` → same shape
    pub fn forward(&self, x: &Tensor, train: bool, activation: Activation) -> Result<Tensor> {
        let c = self.weight.dim(0)?;
        let shape = x.shape().clone();
        if x.dims().last() != Some(&c) {
            return Err(candle_core::Error::ShapeMismatchBinaryOp {
                lhs: shape,
                rhs: self.weight.shape().clone(),
                op: "batch_norm_nhwc",
            }
            .into());
        }
        let x = x.reshape(((), c))?;
        let rows = x.dim(0)?;
        let (mean, invstd) = if train {
            let (mean, var) = prototree_ops::batch_norm_stats(&x)?;
            let m = self.momentum;
            let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean.detach() * m)?)?;
            self.running_mean.set(&rm)?;
            let unbias = if rows > 1 {
                rows as f64 / (rows as f64 - 1.0)
            } else {
                1.0
            };
            let rv =
                ((self.running_var.as_tensor() * (1.0 - m))? + (var.detach() * (m * unbias))?)?;
            self.running_var.set(&rv)?;
            (mean, var)
        } else {
            (
                self.running_mean.as_detached_tensor(),
                self.running_var.as_detached_tensor(),
            )
        };
        let invstd = (invstd + self.eps)?.sqrt()?.recip()?;
        let y = prototree_ops::batch_norm_apply(
            &x,
            (&self.weight, &self.bias),
            (&mean, &invstd),
            activation,
            train,
        )?;
        Ok(y.reshape(shape)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use candle_nn::{BatchNormConfig, ModuleT, VarMap};

    fn max_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
        Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
    }

    /// The fused op against candle's `BatchNorm` (+ `relu` / `clamp(0, 6)`) on the same
    /// variables: output,
    /// running statistics and the gradients of input, weight and bias.
    #[test]
    fn fused_matches_candle_batch_norm() -> anyhow::Result<()> {
        prototree_ops::testing::on_both_paths(|_| matches_candle_batch_norm())
    }

    fn matches_candle_batch_norm() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let activations = [Activation::Identity, Activation::Relu, Activation::Relu6];
        for (train, act) in [true, false]
            .into_iter()
            .flat_map(|t| activations.map(|a| (t, a)))
        {
            let (mut fused_map, mut plain_map) = (VarMap::new(), VarMap::new());
            let vb_f = VarBuilder::from_varmap(&fused_map, DType::F32, &dev);
            let vb_p = VarBuilder::from_varmap(&plain_map, DType::F32, &dev);
            let ours = BatchNormNhwc::new(5, 1e-5, 0.1, vb_f)?;
            let cfg = BatchNormConfig {
                eps: 1e-5,
                remove_mean: true,
                affine: true,
                momentum: 0.1,
            };
            let theirs = candle_nn::batch_norm(5, cfg, vb_p)?;
            // Same non-trivial parameters and running statistics in both maps; a scale of
            // 2.5–3.5 sends a good share of the outputs past both ends of ReLU6.
            for (name, lo) in [
                ("weight", 2.5f32),
                ("bias", 1.0),
                ("running_mean", -1.0),
                ("running_var", 0.5),
            ] {
                let v = Tensor::rand(lo, lo + 1.0, 5, &dev)?;
                fused_map.set_one(name, &v)?;
                plain_map.set_one(name, &v)?;
            }
            let x = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &dev)? * 2.0)?)?;
            let up = Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &dev)?;
            let y1 = ours.forward(x.as_tensor(), train, act)?;
            let mut y2 = theirs
                .forward_t(&x.as_tensor().reshape((24, 5))?, train)?
                .reshape((2, 3, 4, 5))?;
            y2 = match act {
                Activation::Identity => y2,
                Activation::Relu => y2.relu()?,
                Activation::Relu6 => y2.clamp(0f32, 6f32)?,
            };
            assert!(max_diff(&y1, &y2)? < 1e-5, "train {train} {act:?}");
            let (g1, g2) = (
                (&y1 * &up)?.sum_all()?.backward()?,
                (&y2 * &up)?.sum_all()?.backward()?,
            );
            let (d1, d2) = (
                fused_map.data().lock().unwrap(),
                plain_map.data().lock().unwrap(),
            );
            for name in ["running_mean", "running_var"] {
                let d = max_diff(d1[name].as_tensor(), d2[name].as_tensor())?;
                assert!(d < 1e-6, "{name}: {d}");
            }
            let pairs = [
                (x.as_tensor(), x.as_tensor(), "x"),
                (d1["weight"].as_tensor(), d2["weight"].as_tensor(), "weight"),
                (d1["bias"].as_tensor(), d2["bias"].as_tensor(), "bias"),
            ];
            for (a, b, name) in pairs {
                let (ga, gb) = (g1.get(a).unwrap(), g2.get(b).unwrap());
                let d = max_diff(ga, gb)?;
                assert!(d < 1e-4, "train {train} {act:?}: grad {name} diff {d}");
            }
        }
        Ok(())
    }
}
