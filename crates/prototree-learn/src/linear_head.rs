//! A linear classifier on globally average-pooled backbone features: the temporary head
//! of the backbone warm-up ([`crate::warmup`]) and the plain-CNN baseline a tree is
//! compared with (`crates/prototree/examples/linear_baseline.rs`).

use candle_core::{DType, Device, Tensor, Var, D};
use prototree_tree::init::{normal_vec, rng_for};

use crate::Result;

/// Global average pooling and a linear layer: `(classes, channels)` weight drawn from the
/// seed with PyTorch's `Linear` variance (that of a uniform in ±1/√channels), zero bias.
#[derive(Debug, Clone)]
pub struct LinearHead {
    name: String,
    weight: Var,
    bias: Var,
}

impl LinearHead {
    /// A head named `name` for `channels`-channel features and `classes` classes, its
    /// weight drawn from `(seed, "{name}.weight")` (the same pair gives the same head).
    pub fn new(
        classes: usize,
        channels: usize,
        seed: u64,
        name: &str,
        device: &Device,
    ) -> Result<Self> {
        let std = 1.0 / (3.0 * channels.max(1) as f32).sqrt();
        let values = normal_vec(
            &mut rng_for(seed, &format!("{name}.weight")),
            classes * channels,
            0.0,
            std,
        );
        Ok(Self {
            name: name.to_string(),
            weight: Var::from_tensor(&Tensor::from_vec(values, (classes, channels), device)?)?,
            bias: Var::from_tensor(&Tensor::zeros(classes, DType::F32, device)?)?,
        })
    }

    /// The head's variables, named `{name}.weight` and `{name}.bias`.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        vec![
            (format!("{}.weight", self.name), self.weight.clone()),
            (format!("{}.bias", self.name), self.bias.clone()),
        ]
    }

    /// Class logits `(b, classes)` of backbone features `(b, c, h, w)`.
    pub fn logits(&self, features: &Tensor) -> Result<Tensor> {
        let pooled = features.flatten_from(2)?.mean(D::Minus1)?;
        Ok(pooled
            .matmul(&self.weight.as_tensor().t()?)?
            .broadcast_add(self.bias.as_tensor())?)
    }
}

/// Mean cross-entropy of `logits` `(b, k)` against u32 `labels` `(b,)`.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let log_p = shifted.broadcast_sub(&log_sum)?;
    let picked = log_p.gather(&labels.unsqueeze(1)?, 1)?;
    Ok(picked.mean_all()?.neg()?)
}

/// Correct top-1 predictions of `logits` `(b, k)` for `labels` `(b,)`, as a share.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f32> {
    Ok(logits
        .argmax(D::Minus1)?
        .eq(labels)?
        .to_dtype(DType::F32)?
        .mean_all()?
        .to_scalar::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_matches_a_hand_computation() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[1f32, 2.0, 3.0], [0.0, 0.0, 5.0]], &dev)?;
        let labels = Tensor::new(&[2u32, 0], &dev)?;
        let l = |z: [f64; 3], y: usize| {
            let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
            lse - z[y]
        };
        let want = (l([1.0, 2.0, 3.0], 2) + l([0.0, 0.0, 5.0], 0)) / 2.0;
        let got = f64::from(cross_entropy(&logits, &labels)?.to_scalar::<f32>()?);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert_eq!(accuracy(&logits, &labels)?, 0.5);
        Ok(())
    }

    #[test]
    fn logits_are_the_pooled_features_times_the_weight() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let head = LinearHead::new(2, 3, 1, "h", &dev)?;
        let features = Tensor::ones((1, 3, 2, 2), DType::F32, &dev)?;
        let logits = head.logits(&features)?.to_vec2::<f32>()?;
        let w = head.weight.as_tensor().to_vec2::<f32>()?;
        for (k, row) in w.iter().enumerate() {
            let want: f32 = row.iter().sum();
            assert!((logits[0][k] - want).abs() < 1e-6);
        }
        assert_eq!(head.named_vars()[1].0, "h.bias");
        // The same seed and name give the same head.
        let again = LinearHead::new(2, 3, 1, "h", &dev)?;
        assert_eq!(again.weight.as_tensor().to_vec2::<f32>()?, w);
        Ok(())
    }
}
