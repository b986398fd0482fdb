//! Leaf class distributions and their derivative-free update (spec §1.6, §2.5).

use candle_core::{DType, Tensor};

use crate::Result;

/// The leaves' distribution parameters, one row per leaf of the complete tree.
///
/// Distributions are `softmax(params)` per row. The parameters are not trained by the
/// optimiser: [`Leaves::derivative_free_update`] accumulates class evidence instead.
#[derive(Debug, Clone)]
pub struct Leaves {
    params: Tensor,
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
        Ok(Self {
            params: Tensor::zeros((num_leaves, num_classes), DType::F32, device)?,
        })
    }

    /// Leaves from explicit parameters `(num_leaves, num_classes)`.
    pub fn from_params(params: Tensor) -> Result<Self> {
        params.dims2()?;
        Ok(Self {
            params: params.detach(),
        })
    }

    /// The raw parameters `(num_leaves, num_classes)`.
    pub fn params(&self) -> &Tensor {
        &self.params
    }

    /// Class distributions `softmax(params − max)` per leaf, `(num_leaves, num_classes)`.
    pub fn distributions(&self) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax_last_dim(&self.params)?)
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
        let dist = self.distributions()?;
        let ratio = (targets_one_hot.detach() / outputs.detach())?; // (b, k)
        let evidence = path_probs.detach().t()?.matmul(&ratio)?; // (L, k)
        let update = (dist * evidence)?;
        let decayed = (&self.params - (epoch_start / num_batches.max(1) as f64)?)?.relu()?;
        self.params = (decayed + update)?.detach();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
}
