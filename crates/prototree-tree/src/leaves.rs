//! Leaf class distributions and their derivative-free update (spec §1.6, §2.5).

use candle_core::{DType, Tensor};

use crate::Result;

/// The leaves' distribution parameters, one row per leaf of the complete tree.
///
/// Distributions are `softmax(params)` per row. The parameters are not trained by the
/// optimiser: [`Leaves::derivative_free_update`] accumulates class evidence instead.
///
/// The distributions are computed once per change of the parameters and kept, so a forward
/// pass costs no softmax.
#[derive(Debug, Clone)]
pub struct Leaves {
    params: Tensor,
    dist: Tensor,
}

impl Leaves {
    /// Leaves initialised to zeros (uniform distributions), as the reference does.
    ///
    /// # Shapes
    /// returns leaves with parameters `(num_leaves, num_classes)`
    pub fn zeros(
        num_leaves: usize,
        num_classes: usize,
        device: &candle_core::Device,
    ) -> Result<Self> {
        Self::with_params(Tensor::zeros(
            (num_leaves, num_classes),
            DType::F32,
            device,
        )?)
    }

    fn with_params(params: Tensor) -> Result<Self> {
        let dist = candle_nn::ops::softmax_last_dim(&params)?;
        Ok(Self { params, dist })
    }

    /// Leaves from explicit parameters `(num_leaves, num_classes)`.
    pub fn from_params(params: Tensor) -> Result<Self> {
        params.dims2()?;
        Self::with_params(params.detach())
    }

    /// The raw parameters `(num_leaves, num_classes)`.
    pub fn params(&self) -> &Tensor {
        &self.params
    }

    /// Class distributions `softmax(params − max)` per leaf, `(num_leaves, num_classes)`.
    pub fn distributions(&self) -> Result<Tensor> {
        Ok(self.dist.clone())
    }

    /// The distributions of the listed leaves only, one row per entry of `leaves`
    /// (`(leaves.len(), num_classes)`); the same values as the rows of
    /// [`Leaves::distributions`].
    pub fn distributions_of(&self, leaves: &[usize]) -> Result<Tensor> {
        let num_leaves = self.params.dim(0)?;
        let mut index = Vec::with_capacity(leaves.len());
        for &leaf in leaves {
            match u32::try_from(leaf) {
                Ok(i) if leaf < num_leaves => index.push(i),
                _ => {
                    return Err(crate::Error::Data(format!(
                        "leaf {leaf} out of range (the tree has {num_leaves} leaves)"
                    )))
                }
            }
        }
        let index = Tensor::from_vec(index, leaves.len(), self.params.device())?;
        Ok(self.dist.index_select(&index, 0)?)
    }

    /// The soft output `ŷ = π · C`: the path-probability-weighted mixture of the leaf
    /// distributions `C` (constants: leaves learn without gradients, so the backward pass
    /// computes only `∂L/∂π = g · Cᵀ`).
    ///
    /// # Shapes
    /// - `path_probs`: `(b, num_leaves)` → `(b, num_classes)`
    pub fn mixture(&self, path_probs: &Tensor) -> Result<Tensor> {
        Ok(prototree_ops::leaf_mixture(
            path_probs,
            self.distributions()?,
        )?)
    }

    /// Re-seeds leaves (the stall repair, [`crate::leaf_reseed`]): each `(leaf, class)`
    /// gets the parameter `value` for `class` and 0 for every other class, so its
    /// distribution favours `class` by `e^value` to 1 over each other class.
    pub fn reseed(&mut self, reseeds: &[(usize, usize)], value: f32) -> Result<()> {
        let (num_leaves, num_classes) = self.params.dims2()?;
        let mut params = self.params.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        for &(leaf, class) in reseeds {
            if leaf >= num_leaves || class >= num_classes {
                return Err(crate::Error::Data(format!(
                    "cannot re-seed leaf {leaf} with class {class}: the tree has \
                     {num_leaves} leaves and {num_classes} classes"
                )));
            }
            for (c, p) in params[leaf].iter_mut().enumerate() {
                *p = if c == class { value } else { 0.0 };
            }
        }
        let flat: Vec<f32> = params.into_iter().flatten().collect();
        let params = Tensor::from_vec(flat, (num_leaves, num_classes), self.params.device())?
            .to_dtype(self.params.dtype())?;
        *self = Self::with_params(params)?;
        Ok(())
    }

    /// One derivative-free step (spec §2.5), for one batch:
    ///
    /// `update_l = Σ_b π_l(x_b) · c_l ⊙ onehot(y_b) / ŷ(x_b)`;
    /// `params_l ← relu(params_l − epoch_start_l / num_batches) + update_l`.
    ///
    /// `c_l` are the distributions before this update; `π` and `ŷ` come from the batch's
    /// forward pass.
    ///
    /// # Shapes
    /// - `path_probs`: `(b, num_leaves)`, `outputs`: `(b, num_classes)`, `targets_one_hot`: `(b, num_classes)`
    /// - `epoch_start`: the parameters at the start of the epoch, `(num_leaves, num_classes)`
    pub fn derivative_free_update(
        &mut self,
        path_probs: &Tensor,
        outputs: &Tensor,
        targets_one_hot: &Tensor,
        epoch_start: &Tensor,
        num_batches: usize,
    ) -> Result<()> {
        let params = prototree_ops::leaf_update(
            (&self.params, self.distributions()?),
            path_probs,
            outputs,
            targets_one_hot,
            epoch_start,
            num_batches,
        )?;
        *self = Self::with_params(params)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use prototree_ops::testing::weighted_sum_grad;

    #[test]
    fn depth_one_update_by_hand() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        // Two leaves, two classes, params zero -> c = [0.5, 0.5] for both.
        let mut leaves = Leaves::zeros(2, 2, &dev)?;
        let start = leaves.params().clone();
        // One sample of class 1, routed 0.25 left / 0.75 right; output y = 0.5 each.
        let pi = Tensor::new(&[[0.25f32, 0.75]], &dev)?;
        let y = Tensor::new(&[[0.5f32, 0.5]], &dev)?;
        let t = Tensor::new(&[[0f32, 1.0]], &dev)?;
        leaves.derivative_free_update(&pi, &y, &t, &start, 4)?;
        // update_l = pi_l * 0.5 * 1 / 0.5 = pi_l on class 1
        let p = leaves.params().to_vec2::<f32>()?;
        assert_eq!(p, vec![vec![0.0, 0.25], vec![0.0, 0.75]]);
        // Second step with a non-zero epoch start: relu(p - start/4) + update
        let start = Tensor::new(&[[0f32, 0.4], [0.0, 4.0]], &dev)?;
        leaves.derivative_free_update(&pi, &y, &t, &start, 4)?;
        let c0 = (0.25f32).exp() / (1.0 + (0.25f32).exp()); // softmax of [0, .25], class 1
        let c1 = (0.75f32).exp() / (1.0 + (0.75f32).exp());
        let p = leaves.params().to_vec2::<f32>()?;
        let want0 = (0.25f32 - 0.1).max(0.0) + 0.25 * c0 / 0.5;
        let want1 = (0.75f32 - 1.0).max(0.0) + 0.75 * c1 / 0.5;
        assert!((p[0][1] - want0).abs() < 1e-6, "{} vs {}", p[0][1], want0);
        assert!((p[1][1] - want1).abs() < 1e-6, "{} vs {}", p[1][1], want1);
        assert_eq!(p[0][0], 0.0);
        Ok(())
    }

    #[test]
    fn fused_paths_match_the_tensor_formulas() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let params = Tensor::randn(0f32, 2.0, (16, 7), &dev)?.relu()?;
        let mut leaves = Leaves::from_params(params.clone())?;
        let pi = candle_core::Var::from_tensor(&Tensor::rand(0f32, 1.0, (5, 16), &dev)?)?;
        // Mixture and its gradient against a plain matmul.
        let w = Tensor::rand(0f32, 1.0, (5, 7), &dev)?;
        let fused = leaves.mixture(pi.as_tensor())?;
        let plain = pi.as_tensor().matmul(&leaves.distributions()?)?;
        let diff = (&fused - &plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "mixture differs by {diff}");
        let (a, b) = (
            weighted_sum_grad(&fused, &w, &pi)?,
            weighted_sum_grad(&plain, &w, &pi)?,
        );
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "mixture gradients differ by {diff}");
        // Derivative-free step against the tensor formula.
        let y = (Tensor::rand(0f32, 1.0, (5, 7), &dev)? + 0.1)?;
        let t = Tensor::new(&[[1f32, 0., 0., 0., 0., 0., 0.]; 5], &dev)?;
        let start = Tensor::randn(0f32, 1.0, (16, 7), &dev)?.relu()?;
        let dist = leaves.distributions()?;
        let evidence = pi.as_tensor().t()?.matmul(&(&t / &y)?)?;
        let want = ((&params - (&start / 3.0)?)?.relu()? + (dist * evidence)?)?;
        leaves.derivative_free_update(pi.as_tensor(), &y, &t, &start, 3)?;
        let diff = (leaves.params() - want)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "update differs by {diff}");
        // Rows of chosen leaves.
        let rows = leaves.distributions_of(&[3, 0, 3])?.to_vec2::<f32>()?;
        let all = leaves.distributions()?.to_vec2::<f32>()?;
        assert_eq!(rows, vec![all[3].clone(), all[0].clone(), all[3].clone()]);
        assert!(leaves.distributions_of(&[16]).is_err());
        Ok(())
    }
}
