//! SmoothGrad (Smilkov et al., 2017) of a prototype's similarity: a gradient-based
//! attribution map beside the upsampled similarity map. The gradient of the prototype's
//! similarity (its routing probability `exp(−‖z − p‖)` at the nearest patch) with respect
//! to the input pixels, in absolute value summed over the colour channels, averaged over
//! noisy copies of the image, then min-max normalised to [0, 1] like
//! [`crate::relevance::attribution_map`].

use candle_core::{Device, Tensor, Var};
use prototree_tree::ProtoTree;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::perturb::standard_normal;
use crate::{Error, Result};

/// Settings of SmoothGrad.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothGrad {
    /// Noisy copies averaged (one batch).
    pub samples: usize,
    /// Standard deviation of the noise as a share of the image's value range (the paper
    /// recommends 10–20 %).
    pub sigma: f32,
    /// Seed of the noise.
    pub seed: u64,
}

/// The SmoothGrad map (`size × size`, row-major, in [0, 1]) of prototype row `row` on the
/// normalised CHW image `chw` (`3 × size × size`).
pub fn smoothgrad_map(
    model: &ProtoTree,
    chw: &[f32],
    size: usize,
    row: usize,
    settings: &SmoothGrad,
    device: &Device,
) -> Result<Vec<f32>> {
    let plane = size * size;
    if chw.len() != 3 * plane || settings.samples == 0 {
        return Err(Error::Invalid(format!(
            "SmoothGrad needs one 3×{size}×{size} image and at least one sample"
        )));
    }
    let (lo, hi) = chw
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let sigma = settings.sigma * (hi - lo).max(f32::EPSILON);
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut batch = Vec::with_capacity(settings.samples * chw.len());
    for _ in 0..settings.samples {
        batch.extend(chw.iter().map(|v| v + sigma * standard_normal(&mut rng)));
    }
    let input = Var::from_tensor(&Tensor::from_vec(
        batch,
        (settings.samples, 3, size, size),
        device,
    )?)?;
    let latent = model.latent(input.as_tensor(), false)?;
    let out = model.forward_latent(&latent)?;
    let similarity = out.routing.narrow(1, row, 1)?.sum_all()?;
    let grads = similarity.backward()?;
    let grad = grads
        .get(input.as_tensor())
        .ok_or_else(|| Error::Invalid("SmoothGrad: no gradient reached the input".into()))?
        .abs()?
        .sum(1)?
        .mean(0)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let (lo, hi) = grad
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let span = hi - lo;
    Ok(grad
        .iter()
        .map(|v| if span > 1e-20 { (v - lo) / span } else { 1.0 })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_is_normalised_and_depends_on_the_prototype() -> anyhow::Result<()> {
        let tree = prototree_tree::testing::small_cnn_tree(2, 4, 3, 0)?;
        let size = 32;
        let chw: Vec<f32> = (0..3 * size * size)
            .map(|i| ((i * 7919) % 255) as f32 / 255.0)
            .collect();
        let settings = SmoothGrad {
            samples: 3,
            sigma: 0.15,
            seed: 1,
        };
        let a = smoothgrad_map(&tree, &chw, size, 0, &settings, &Device::Cpu)?;
        assert_eq!(a.len(), size * size);
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(a.contains(&1.0));
        let again = smoothgrad_map(&tree, &chw, size, 0, &settings, &Device::Cpu)?;
        assert_eq!(a, again, "seeded noise: the same map");
        let b = smoothgrad_map(&tree, &chw, size, 1, &settings, &Device::Cpu)?;
        assert_ne!(a, b);
        assert!(smoothgrad_map(&tree, &chw[1..], size, 0, &settings, &Device::Cpu).is_err());
        Ok(())
    }
}
