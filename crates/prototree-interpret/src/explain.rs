//! Local explanations (spec §6.2): the greedy path of one image, and at every decision
//! the image's most similar patch, its box in the image and the similarity map.
//!
//! [`explain_latent`] computes the numbers; `prototree-render` draws them.

use prototree_tree::distance::DISTANCE_EPS;
use prototree_tree::geometry::{patch_box, PixelBox};
use prototree_tree::topology::NodeId;
use prototree_tree::{Latent, ProtoTree, Routing};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One decision on an explained path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainedStep {
    /// The decision node (reference numbering).
    pub node: NodeId,
    /// Prototype row (heap index of the node).
    pub row: usize,
    /// Similarity `exp(−d)` of the prototype to the image's nearest patch.
    pub similarity: f32,
    /// Whether the path went to the "present" (right) child.
    pub present: bool,
    /// Row of the nearest patch in the feature map.
    pub patch_row: u32,
    /// Column of the nearest patch in the feature map.
    pub patch_col: u32,
    /// The nearest patch's region in the explained image `[x0, y0, x1, y1)`.
    pub image_box: PixelBox,
    /// Similarity to every patch, row-major `fmap_height × fmap_width`.
    pub similarity_map: Vec<f32>,
    /// The box of the same size whose occlusion lowers the similarity the most (the
    /// occlusion box of docs/explanations.md), when computed.
    #[serde(default)]
    pub occlusion_box: Option<PixelBox>,
}

/// The explanation of one image's greedy prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalExplanation {
    /// Predicted class (top class of the reached leaf).
    pub class_index: usize,
    /// The reached leaf's class distribution.
    pub probabilities: Vec<f32>,
    /// The reached leaf (left-to-right index in the complete tree).
    pub leaf: usize,
    /// The decisions from the root to the leaf.
    pub steps: Vec<ExplainedStep>,
    /// Feature-map height.
    pub fmap_height: usize,
    /// Feature-map width.
    pub fmap_width: usize,
}

/// Squared-distance-based similarity map of prototype `p` over `patches` (`n × d`).
fn similarity_map(patches: &[f32], p: &[f32]) -> Vec<f32> {
    let p_sq: f32 = p.iter().map(|v| v * v).sum();
    patches
        .chunks_exact(p.len())
        .map(|z| {
            let (zz, zp) = z
                .iter()
                .zip(p)
                .fold((0f32, 0f32), |(a, b), (x, y)| (a + x * x, b + x * y));
            let d_sq = (zz - 2.0 * zp + p_sq).abs();
            (-(f64::from(d_sq) + DISTANCE_EPS).sqrt()).exp() as f32
        })
        .collect()
}

/// Explains the greedy prediction of every image of `latent`, for images shown at
/// `image_width × image_height` pixels.
pub fn explain_latent(
    model: &ProtoTree,
    latent: &Latent,
    image_width: u32,
    image_height: u32,
) -> Result<Vec<LocalExplanation>> {
    let (b, n, d) = latent.patches.dims3()?;
    let (fh, fw) = (latent.height, latent.width);
    if fh * fw != n || n == 0 {
        return Err(Error::Invalid(format!(
            "latent map {fh}×{fw} does not hold {n} patches"
        )));
    }
    let patches = latent.patches.flatten_all()?.to_vec1::<f32>()?;
    let protos = model.prototypes()?.flatten_all()?.to_vec1::<f32>()?;
    let preds = model.predict_latent(latent, Routing::Greedy)?;
    let mut out = Vec::with_capacity(b);
    for (bi, pred) in preds.into_iter().enumerate() {
        let image = &patches[bi * n * d..(bi + 1) * n * d];
        let mut steps = Vec::with_capacity(pred.path.len());
        for step in &pred.path {
            let p = protos
                .get(step.heap * d..(step.heap + 1) * d)
                .ok_or_else(|| {
                    Error::Invalid(format!("no prototype row {} in the model", step.heap))
                })?;
            let map = similarity_map(image, p);
            let best = map
                .iter()
                .enumerate()
                .fold(0usize, |best, (i, v)| if *v > map[best] { i } else { best });
            let (row, col) = ((best / fw) as u32, (best % fw) as u32);
            steps.push(ExplainedStep {
                node: step.node,
                row: step.heap,
                similarity: step.similarity,
                present: step.present,
                patch_row: row,
                patch_col: col,
                image_box: patch_box(row, col, fh as u32, fw as u32, image_width, image_height),
                similarity_map: map,
                occlusion_box: None,
            });
        }
        out.push(LocalExplanation {
            class_index: pred.class_index,
            probabilities: pred.probabilities,
            leaf: pred.leaf,
            steps,
            fmap_height: fh,
            fmap_width: fw,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use prototree_tree::Leaves;

    #[test]
    fn path_boxes_and_maps_follow_the_nearest_patch() -> anyhow::Result<()> {
        let mut tree = prototree_tree::testing::small_cnn_tree(2, 2, 2, 1)?;
        // Root prototype equals patch 3 exactly; node 2 (heap) equals patch 0.
        let protos = Tensor::new(&[[1f32, 0.0], [5.0, 5.0], [0.0, 1.0]], &Device::Cpu)?;
        tree.set_prototypes(&protos)?;
        tree.set_leaves(Leaves::from_params(Tensor::new(
            &[[0f32, 0.0], [0.0, 0.0], [3.0, 0.0], [0.0, 3.0]],
            &Device::Cpu,
        )?)?)?;
        // A 2×2 map: patches (0,1), (0.5,0.5), (0.5,0.5), (1,0).
        let latent = Latent {
            patches: Tensor::new(
                &[[[0f32, 1.0], [0.5, 0.5], [0.5, 0.5], [1.0, 0.0]]],
                &Device::Cpu,
            )?,
            height: 2,
            width: 2,
        };
        let ex = explain_latent(&tree, &latent, 64, 64)?;
        let ex = &ex[0];
        assert_eq!(ex.steps.len(), 2);
        let root = &ex.steps[0];
        // Exact match: d = sqrt(eps) ≈ 0, similarity ≈ 1, present, patch (1, 1).
        assert!(root.present && root.similarity > 0.99);
        assert_eq!((root.patch_row, root.patch_col), (1, 1));
        assert_eq!(root.similarity_map.len(), 4);
        assert!((root.similarity_map[3] - root.similarity).abs() < 1e-6);
        // Cell (1,1) of a 2×2 map over 64 px: the reference's box (checked with OpenCV).
        assert_eq!(root.image_box, [17, 17, 64, 64]);
        let second = &ex.steps[1];
        assert_eq!(second.row, 2);
        assert_eq!((second.patch_row, second.patch_col), (0, 0));
        assert!(second.present);
        assert_eq!(ex.leaf, 3);
        assert_eq!(ex.class_index, 1);
        Ok(())
    }
}
