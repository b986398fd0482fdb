//! SmoothGrad (Smilkov et al., 2017) of a prototype's similarity: a gradient-based
//! attribution map beside the upsampled similarity map. The gradient of the prototype's
//! similarity (its routing probability `exp(−‖z − p‖)` at the nearest patch) with respect
//! to the input pixels, in absolute value summed over the colour channels, averaged over
//! noisy copies of the image, then min-max normalised to [0, 1] like
//! [`crate::relevance::attribution_map`].

use candle_core::Device;
use prototree_tree::ProtoTree;

use crate::input_gradients::{input_gradient_maps, GradientSmoothing, IMAGE_SEED_STEP};
use crate::relevance::min_max_normalise;
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
    // `input_gradient_maps` seeds image `i`'s noise with `seed ^ (i + 1)·φ`; the one image
    // here gets exactly `settings.seed`.
    let smoothing = GradientSmoothing {
        samples: settings.samples,
        sigma: settings.sigma,
        seed: settings.seed ^ IMAGE_SEED_STEP,
    };
    let mut grad = input_gradient_maps(model, chw, size, &[vec![row]], &smoothing, device)?
        .into_iter()
        .flatten()
        .next()
        .ok_or_else(|| Error::Invalid("SmoothGrad: no gradient map".into()))?;
    min_max_normalise(&mut grad, 1e-20);
    Ok(grad)
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
