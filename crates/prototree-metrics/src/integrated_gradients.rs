//! Integrated gradients (Sundararajan et al., 2017) of a prototype's similarity: a third
//! attribution map beside the upsampled similarity map and SmoothGrad
//! ([`crate::smoothgrad`]), one of the gradient methods CaBRNet offers.
//!
//! The attribution of input value `x_i` is `(x_i − x̄_i) · mean_k ∂s/∂x_i` at the `steps`
//! points `x̄ + α_k (x − x̄)`, `α_k = (k + ½)/steps` (the midpoint rule for the path
//! integral), where `s` is the prototype's similarity (its routing probability at the
//! nearest patch) and `x̄` the baseline: the all-zero normalised image, i.e. the data's mean
//! colour everywhere. Their sum over all inputs approaches `s(x) − s(x̄)` as `steps` grows
//! (completeness, tested). The map is the absolute attribution summed over the colour
//! channels, min-max normalised to [0, 1] like [`crate::relevance::attribution_map`].

use candle_core::{Device, Tensor};
use prototree_tree::ProtoTree;

use crate::input_gradients::input_gradients;
use crate::relevance::min_max_normalise;
use crate::{Error, Result};

/// The signed attributions `(3 × size × size)` of prototype row `row`'s similarity on the
/// normalised CHW image `chw` (`3 × size × size`), from `steps` points on the straight
/// path from the zero baseline.
pub fn integrated_gradients(
    model: &ProtoTree,
    chw: &[f32],
    size: usize,
    row: usize,
    steps: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let values = 3 * size * size;
    if chw.len() != values || steps == 0 {
        return Err(Error::Invalid(format!(
            "integrated gradients need one 3×{size}×{size} image and at least one step"
        )));
    }
    let mut batch = Vec::with_capacity(steps * values);
    for k in 0..steps {
        let alpha = (k as f32 + 0.5) / steps as f32;
        batch.extend(chw.iter().map(|v| alpha * v));
    }
    let input = Tensor::from_vec(batch, (steps, 3, size, size), device)?;
    let grad = input_gradients(model, &input, steps, &[vec![row]])?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Invalid("integrated gradients: no gradient".into()))?;
    let mean = grad.mean(0)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(mean.iter().zip(chw).map(|(g, x)| g * x).collect())
}

/// The integrated-gradients map (`size × size`, row-major, in [0, 1]) of prototype row
/// `row` on the normalised CHW image `chw` (`3 × size × size`).
pub fn integrated_gradients_map(
    model: &ProtoTree,
    chw: &[f32],
    size: usize,
    row: usize,
    steps: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let attributions = integrated_gradients(model, chw, size, row, steps, device)?;
    let plane = size * size;
    let mut map: Vec<f32> = (0..plane)
        .map(|i| (0..3).map(|c| attributions[c * plane + i].abs()).sum())
        .collect();
    min_max_normalise(&mut map, 1e-20);
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The similarity of prototype `row` on one normalised CHW image.
    fn similarity(tree: &ProtoTree, chw: &[f32], size: usize, row: usize) -> anyhow::Result<f32> {
        let input = Tensor::from_vec(chw.to_vec(), (1, 3, size, size), &Device::Cpu)?;
        let latent = tree.latent(&input, false)?;
        let routing = tree.forward_latent(&latent)?.routing;
        Ok(routing.get(0)?.get(row)?.to_scalar::<f32>()?)
    }

    fn image(size: usize) -> Vec<f32> {
        (0..3 * size * size)
            .map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0)
            .collect()
    }

    #[test]
    fn the_attributions_add_up_to_the_change_from_the_baseline() -> anyhow::Result<()> {
        let tree = prototree_tree::testing::small_cnn_tree(2, 4, 3, 0)?;
        let size = 16;
        let chw = image(size);
        for row in [0, 2] {
            let total: f32 = integrated_gradients(&tree, &chw, size, row, 128, &Device::Cpu)?
                .iter()
                .sum();
            let change = similarity(&tree, &chw, size, row)?
                - similarity(&tree, &vec![0.0; chw.len()], size, row)?;
            // A change worth explaining: not two vanishing similarities.
            assert!(change.abs() > 1e-3, "row {row}: change {change}");
            assert!(
                (total - change).abs() <= 0.02 * change.abs().max(1e-3),
                "row {row}: attributions sum to {total}, the similarity changed by {change}"
            );
        }
        Ok(())
    }

    #[test]
    fn the_map_is_normalised_and_depends_on_the_prototype() -> anyhow::Result<()> {
        let tree = prototree_tree::testing::small_cnn_tree(2, 4, 3, 0)?;
        let size = 16;
        let chw = image(size);
        let a = integrated_gradients_map(&tree, &chw, size, 0, 8, &Device::Cpu)?;
        assert_eq!(a.len(), size * size);
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(a.contains(&1.0));
        let b = integrated_gradients_map(&tree, &chw, size, 1, 8, &Device::Cpu)?;
        assert_ne!(a, b);
        assert!(integrated_gradients_map(&tree, &chw[1..], size, 0, 8, &Device::Cpu).is_err());
        assert!(integrated_gradients_map(&tree, &chw, size, 0, 0, &Device::Cpu).is_err());
        assert!(integrated_gradients_map(&tree, &chw, size, 99, 8, &Device::Cpu).is_err());
        Ok(())
    }
}
