//! Greedy path-only inference: follow each image's more likely branch from the root,
//! computing only the prototypes met on the way (`depth` distances per image instead of
//! `2^depth − 1`).
//!
//! Fused on the CPU (image by image in parallel: the squared norms of the image's patches
//! once, then per level one sweep of dot products against the reached node's prototype);
//! on a CUDA device one kernel launch for the whole batch (`greedy_cuda`: a block per image
//! walks its path); elsewhere level by level over the batch with tensor ops (one batched
//! product per level against each image's own prototype). Both turn the minimum squared distance into a
//! similarity with the same host arithmetic, so they differ only by dot-product rounding.

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::cpu::with_cpu_slice;
use crate::dispatch::fused_cpu_f32;
use crate::distance::DISTANCE_EPS;
use crate::simd::{dot, dots_against};

/// How a branch (heap order) routes in greedy inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreedyBranch {
    /// A real decision: right ("present") when the similarity exceeds 1/2.
    Decide,
    /// A pruned pass-through to the right child.
    Right,
    /// A pruned pass-through to the left child (or a removed branch).
    Left,
}

/// One decision on a greedy path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GreedyDecision {
    /// The branch, in heap order.
    pub heap: usize,
    /// Similarity `exp(−min distance)` of the image to the branch's prototype.
    pub similarity: f32,
}

impl GreedyDecision {
    /// Whether the path goes right ("the prototype is present").
    pub fn present(&self) -> bool {
        self.similarity > 0.5
    }
}

/// The greedy path of one image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GreedyPath {
    /// The reached leaf, left to right.
    pub leaf: usize,
    /// The real decisions on the way, root first.
    pub decisions: Vec<GreedyDecision>,
}

/// Similarity from a minimum squared distance (the reference's `exp(−sqrt(d² + ε))`).
fn similarity_of(min_sq: f32) -> f32 {
    (-(f64::from(min_sq) + DISTANCE_EPS).sqrt()).exp() as f32
}

/// The child heap index after branch `h` routed `right` or not.
fn child(h: usize, right: bool) -> usize {
    if right {
        2 * h + 2
    } else {
        2 * h + 1
    }
}

/// Greedy paths of a batch through a tree whose branches route as `branches` (heap order,
/// `2^depth − 1` of them).
///
/// # Shapes
/// - `patches`: `(b, n, d)`, `prototypes`: `(P, d)` with `P ≥ branches.len()` (heap order)
pub fn greedy_paths(
    patches: &Tensor,
    prototypes: &Tensor,
    branches: &[GreedyBranch],
) -> candle_core::Result<Vec<GreedyPath>> {
    let (_, _, d) = patches.dims3()?;
    let (p, d2) = prototypes.dims2()?;
    if d != d2 || p < branches.len() || !(branches.len() + 1).is_power_of_two() {
        candle_core::bail!(
            "greedy paths: prototypes ({p}, {d2}) for {} branches of patches of length {d}",
            branches.len()
        );
    }
    if fused_cpu_f32(&[patches, prototypes]) {
        return greedy_paths_cpu(&patches.contiguous()?, &prototypes.contiguous()?, branches);
    }
    #[cfg(feature = "cuda")]
    if crate::dispatch::cuda_f32(&[patches, prototypes])
        && crate::greedy_cuda::fits(patches.dim(1)?)
    {
        return crate::greedy_cuda::greedy_paths_cuda(patches, prototypes, branches, similarity_of);
    }
    greedy_paths_generic(patches, prototypes, branches)
}

/// [`greedy_paths`] with the CPU kernel (f32, contiguous inputs).
fn greedy_paths_cpu(
    patches: &Tensor,
    prototypes: &Tensor,
    branches: &[GreedyBranch],
) -> candle_core::Result<Vec<GreedyPath>> {
    let (b, n, d) = patches.dims3()?;
    with_cpu_slice(patches, "greedy paths", |z| {
        with_cpu_slice(prototypes, "greedy paths", |protos| {
            (0..b)
                .into_par_iter()
                .map_init(
                    || (Vec::new(), Vec::new()),
                    |(patch_sq, cross): &mut (Vec<f32>, Vec<f32>), bi| {
                        let image = &z[bi * n * d..(bi + 1) * n * d];
                        patch_sq.clear();
                        patch_sq.extend(image.chunks_exact(d.max(1)).take(n).map(|r| dot(r, r)));
                        greedy_one_image(branches, image, patch_sq, protos, d, cross)
                    },
                )
                .collect::<Vec<_>>()
        })
    })?
}

/// depth of a complete tree of `branches` branches.
fn depth_of(branches: usize) -> usize {
    (branches + 1).trailing_zeros() as usize
}

/// The greedy path of one image: `image` `(n, d)` row-major with squared norms `patch_sq`.
fn greedy_one_image(
    branches: &[GreedyBranch],
    image: &[f32],
    patch_sq: &[f32],
    protos: &[f32],
    d: usize,
    cross: &mut Vec<f32>,
) -> GreedyPath {
    let mut h = 0usize;
    let mut decisions = Vec::with_capacity(depth_of(branches.len()));
    while h < branches.len() {
        let right = match branches[h] {
            GreedyBranch::Decide => {
                let proto = &protos[h * d..(h + 1) * d];
                let p_sq = dot(proto, proto);
                cross.resize(patch_sq.len(), 0.0);
                dots_against(image, d, proto, cross);
                let mut min_sq = f32::INFINITY;
                for (&c, &zz) in cross.iter().zip(patch_sq) {
                    min_sq = min_sq.min((zz - 2.0 * c + p_sq).abs());
                }
                let decision = GreedyDecision {
                    heap: h,
                    similarity: similarity_of(min_sq),
                };
                decisions.push(decision);
                decision.present()
            }
            GreedyBranch::Right => true,
            GreedyBranch::Left => false,
        };
        h = child(h, right);
    }
    GreedyPath {
        leaf: h - branches.len(),
        decisions,
    }
}

/// [`greedy_paths`] with tensor ops, level by level (any device and dtype).
fn greedy_paths_generic(
    patches: &Tensor,
    prototypes: &Tensor,
    branches: &[GreedyBranch],
) -> candle_core::Result<Vec<GreedyPath>> {
    let b = patches.dim(0)?;
    let (patches, prototypes) = (patches.detach(), prototypes.detach());
    let patch_sq = patches.sqr()?.sum(2)?; // (b, n)
    let device = patches.device();
    let mut heap = vec![0usize; b];
    let mut paths = vec![GreedyPath::default(); b];
    for _ in 0..depth_of(branches.len()) {
        let deciding: Vec<usize> = (0..b)
            .filter(|&i| branches[heap[i]] == GreedyBranch::Decide)
            .collect();
        let mut similarity = vec![0f32; b];
        if !deciding.is_empty() {
            let images: Vec<u32> = deciding.iter().map(|&i| i as u32).collect();
            let nodes: Vec<u32> = deciding.iter().map(|&i| heap[i] as u32).collect();
            let images = Tensor::from_vec(images, deciding.len(), device)?;
            let nodes = Tensor::from_vec(nodes, deciding.len(), device)?;
            let protos = prototypes.index_select(&nodes, 0)?; // (m, d)
            let cross = patches
                .index_select(&images, 0)?
                .matmul(&protos.unsqueeze(2)?)?
                .squeeze(2)?; // (m, n)
            let proto_sq = protos.sqr()?.sum_keepdim(1)?; // (m, 1)
            let min_sq = (patch_sq.index_select(&images, 0)? - (cross * 2.0)?)?
                .broadcast_add(&proto_sq)?
                .abs()?
                .min(1)?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?;
            for (&i, &m) in deciding.iter().zip(&min_sq) {
                similarity[i] = similarity_of(m);
            }
        }
        for i in 0..b {
            let h = heap[i];
            let right = match branches[h] {
                GreedyBranch::Decide => {
                    let decision = GreedyDecision {
                        heap: h,
                        similarity: similarity[i],
                    };
                    paths[i].decisions.push(decision);
                    decision.present()
                }
                GreedyBranch::Right => true,
                GreedyBranch::Left => false,
            };
            heap[i] = child(h, right);
        }
    }
    for (path, h) in paths.iter_mut().zip(heap) {
        path.leaf = h - branches.len();
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::with_generic_ops;
    use candle_core::Device;

    #[test]
    fn fused_and_generic_paths_agree() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let patches = Tensor::rand(0f32, 1.0, (6, 9, 5), &dev)?;
        // Prototypes near some patches, so both directions occur.
        let prototypes = (patches.get(0)?.narrow(0, 0, 7)? * 0.98)?;
        use GreedyBranch::*;
        let branches = [Decide, Decide, Right, Decide, Left, Decide, Decide];
        let fused = greedy_paths(&patches, &prototypes, &branches)?;
        let generic = with_generic_ops(|| greedy_paths(&patches, &prototypes, &branches))?;
        assert_eq!(fused.len(), 6);
        for (f, g) in fused.iter().zip(&generic) {
            assert_eq!(f.leaf, g.leaf);
            assert_eq!(f.decisions.len(), g.decisions.len());
            for (a, b) in f.decisions.iter().zip(&g.decisions) {
                assert_eq!(a.heap, b.heap);
                assert!((a.similarity - b.similarity).abs() < 1e-5);
            }
        }
        // Image 0 matches prototype 0 closely: right at the root, then the pass-through.
        assert_eq!(fused[0].decisions[0].heap, 0);
        assert!(fused[0].decisions[0].present());
        assert!(greedy_paths(&patches, &prototypes, &branches[..6]).is_err());
        Ok(())
    }
}
