//! One forward pass over a batch of images: similarity maps and greedy routing.

use candle_core::{Device, Tensor};
use prototree_tree::distance::{squared_distances, DISTANCE_EPS};
use prototree_tree::inference::greedy_path;
use prototree_tree::ProtoTree;

use super::argmax;
use crate::{Error, Result};

/// One decision on an image's greedy path.
#[derive(Debug, Clone, Copy)]
pub(super) struct Step {
    pub row: usize,
    pub similarity: f32,
    pub present: bool,
}

/// Greedy result of one forward pass over one image.
#[derive(Debug, Clone)]
pub(super) struct Routed {
    pub soft_class: usize,
    pub greedy_class: usize,
    pub steps: Vec<Step>,
    /// The similarity of every prototype row (the routing probability to the right).
    pub routing: Vec<f32>,
}

/// Latent similarity maps and routing of a batch of images.
pub(super) struct BatchResult {
    /// Per image and prototype row (all rows), the similarity map over the `fh·fw` cells:
    /// `(b, P, n)` row-major.
    sims: Vec<f32>,
    num_rows: usize,
    cells: usize,
    pub fh: usize,
    pub fw: usize,
    pub routed: Vec<Routed>,
}

impl BatchResult {
    /// The similarity map of prototype row `row` on image `bi` of the batch.
    pub fn map(&self, bi: usize, row: usize) -> &[f32] {
        let off = (bi * self.num_rows + row) * self.cells;
        &self.sims[off..off + self.cells]
    }
}

/// Runs the model on normalised CHW images (`b` of them, side `size`).
pub(super) fn run_batch(
    model: &ProtoTree,
    chw: Vec<f32>,
    b: usize,
    size: usize,
    leaf_top: &[usize],
    device: &Device,
) -> Result<BatchResult> {
    let images = Tensor::from_vec(chw, (b, 3, size, size), device)?;
    let latent = model.latent(&images, false)?;
    let out = model.forward_latent(&latent)?;
    let probs = out.probabilities.to_vec2::<f32>()?;
    let routing = out.routing.to_vec2::<f32>()?;
    let topo = model.topology();
    let mut routed = Vec::with_capacity(b);
    for (p, r) in probs.iter().zip(routing) {
        let (leaf, path) = greedy_path(topo, &r);
        let greedy_class = leaf_top
            .get(leaf)
            .copied()
            .ok_or_else(|| Error::Invalid(format!("leaf {leaf} has no class distribution")))?;
        routed.push(Routed {
            soft_class: argmax(p),
            greedy_class,
            steps: path
                .iter()
                .map(|s| Step {
                    row: s.heap,
                    similarity: s.similarity,
                    present: s.present,
                })
                .collect(),
            routing: r,
        });
    }
    let protos = model.prototypes()?;
    let dist_sq = squared_distances(&latent.patches, &protos)?;
    let (_, n, num_rows) = dist_sq.dims3()?;
    // (b, n, P) → (b, P, n) so each map is contiguous.
    let sims: Vec<f32> = dist_sq
        .transpose(1, 2)?
        .contiguous()?
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|d| (-(f64::from(d) + DISTANCE_EPS).sqrt()).exp() as f32)
        .collect();
    Ok(BatchResult {
        sims,
        num_rows,
        cells: n,
        fh: latent.height,
        fw: latent.width,
        routed,
    })
}
