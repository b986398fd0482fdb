//! Route repair: opening the path to a re-seeded leaf ([`crate::leaf_reseed`]).
//!
//! A re-seeded leaf only helps when the class's images can get there. The routing is
//! `exp(−distance)`: a node whose prototype is far from every patch of the class sends the
//! class the other way with a vanishing gradient, so a leaf behind such a node stays out
//! of reach (measured on the demo set: re-seeding leaves alone moved no images). The
//! repair sets, on the path from the root to the re-seeded leaf, every prototype that
//! sends the class the wrong way to a latent patch that does the right thing:
//!
//! - where the path goes right (prototype present), a patch of the class's own images that
//!   is present in them and absent from every other class (the largest gap between the
//!   class's mean similarity and the largest mean similarity of another class);
//! - where it goes left (prototype absent), a patch of other classes' images that is
//!   absent from the class and present in the others.
//!
//! Nodes that already send the class's images the right way (median similarity at least
//! 1/2 for right, below 1/2 for left) keep their prototypes.

use candle_core::Tensor;

use crate::topology::{Direction, Topology};
use crate::Result;

/// Latent patches of some training images of one class.
#[derive(Debug, Clone)]
pub struct ClassPatches {
    /// The class.
    pub class: usize,
    /// `(images, patches, d)` latent patches.
    pub patches: Tensor,
}

/// The nodes (heap indices) on the path from the root to leaf `leaf` of a tree with
/// `num_branches` branches, with the direction taken at each, root first.
pub fn path_to_leaf(num_branches: usize, leaf: usize) -> Vec<(usize, Direction)> {
    let mut path = Vec::new();
    let mut h = num_branches + leaf;
    while let Some((parent, dir)) = Topology::parent(h) {
        path.push((parent, dir));
        h = parent;
    }
    path.reverse();
    path
}

/// Similarities `exp(−min distance)` of every image in `patches` `(b, n, d)` to every
/// candidate `(c, d)`: `(b, c)`.
pub(crate) fn similarities(patches: &Tensor, candidates: &Tensor) -> Result<Tensor> {
    let sq = prototree_ops::distance::squared_distances(patches, candidates)?;
    let min_sq = sq.min(1)?; // (b, c)
    Ok(prototree_ops::distance::similarity(
        &prototree_ops::distance::distances_from_squared(&min_sq)?,
    )?)
}

/// The median of each column of `(b, c)`, as a vector of `c`.
fn column_medians(t: &Tensor) -> Result<Vec<f32>> {
    let rows = t.to_vec2::<f32>()?;
    let cols = rows.first().map_or(0, Vec::len);
    Ok((0..cols)
        .map(|c| {
            let mut v: Vec<f32> = rows.iter().map(|r| r[c]).collect();
            v.sort_by(f32::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        })
        .collect())
}

/// New prototype values `(node, (d,))` that route `target`'s images along `path`
/// ([`path_to_leaf`]), given the current `prototypes` `(P, d)` and patches of `others`
/// (other classes; at least one image each). Nodes already routing the class's images
/// the right way are left out. The chosen prototypes for successive nodes are distinct
/// patches.
pub fn plan_route(
    prototypes: &Tensor,
    path: &[(usize, Direction)],
    target: &ClassPatches,
    others: &[ClassPatches],
) -> Result<Vec<(usize, Tensor)>> {
    let d = prototypes.dim(1)?;
    let own_candidates = target.patches.reshape(((), d))?;
    let other_patches: Vec<&Tensor> = others.iter().map(|o| &o.patches).collect();
    let other_candidates = if other_patches.is_empty() {
        None
    } else {
        let flat: Vec<Tensor> = other_patches
            .iter()
            .map(|p| p.reshape(((), d)))
            .collect::<candle_core::Result<_>>()?;
        Some(Tensor::cat(&flat, 0)?)
    };
    // Mean similarity of each class to each candidate: (classes, c) per candidate set.
    let class_means = |candidates: &Tensor| -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
        let own = similarities(&target.patches, candidates)?
            .mean(0)?
            .to_vec1::<f32>()?;
        let rest = others
            .iter()
            .map(|o| {
                Ok(similarities(&o.patches, candidates)?
                    .mean(0)?
                    .to_vec1::<f32>()?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((own, rest))
    };
    let mut plan = Vec::new();
    let mut own_scores: Option<Vec<f32>> = None;
    let mut other_scores: Option<Vec<f32>> = None;
    for &(node, dir) in path {
        let current = prototypes.get(node)?.unsqueeze(0)?;
        let median = column_medians(&similarities(&target.patches, &current)?)?
            .first()
            .copied()
            .unwrap_or(0.0);
        let wrong = match dir {
            Direction::Right => median < 0.5,
            Direction::Left => median >= 0.5,
        };
        if !wrong {
            continue;
        }
        let chosen = match dir {
            Direction::Right => {
                if own_scores.is_none() {
                    let (own, rest) = class_means(&own_candidates)?;
                    own_scores = Some(
                        own.iter()
                            .enumerate()
                            .map(|(i, s)| s - rest.iter().map(|r| r[i]).fold(0f32, |a, b| a.max(b)))
                            .collect(),
                    );
                }
                match own_scores.as_mut() {
                    Some(scores) => take_best(&own_candidates, scores)?,
                    None => None,
                }
            }
            Direction::Left => match &other_candidates {
                Some(cands) => {
                    if other_scores.is_none() {
                        let (own, rest) = class_means(cands)?;
                        let n = rest.len().max(1) as f32;
                        other_scores = Some(
                            own.iter()
                                .enumerate()
                                .map(|(i, s)| rest.iter().map(|r| r[i]).sum::<f32>() / n - s)
                                .collect(),
                        );
                    }
                    match other_scores.as_mut() {
                        Some(scores) => take_best(cands, scores)?,
                        None => None,
                    }
                }
                None => None,
            },
        };
        if let Some(p) = chosen {
            plan.push((node, p));
        }
    }
    Ok(plan)
}

/// The best candidate by `scores`, which is then marked used (score −∞).
fn take_best(candidates: &Tensor, scores: &mut [f32]) -> Result<Option<Tensor>> {
    let best = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_finite())
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i);
    match best {
        Some(i) => {
            scores[i] = f32::NEG_INFINITY;
            Ok(Some(candidates.get(i)?))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Mean over `(b, n, d)` patches' images of their similarity to `prototype` `(d,)`.
    fn mean_similarity(patches: &Tensor, prototype: &Tensor) -> Result<f32> {
        Ok(similarities(patches, &prototype.unsqueeze(0)?)?
            .mean_all()?
            .to_scalar::<f32>()?)
    }

    #[test]
    fn the_path_to_a_leaf_by_hand() {
        // Depth 2: branches 0, 1, 2; leaves 0..3 at heap 3..6.
        assert_eq!(
            path_to_leaf(3, 0),
            [(0, Direction::Left), (1, Direction::Left)]
        );
        assert_eq!(
            path_to_leaf(3, 2),
            [(0, Direction::Right), (2, Direction::Left)]
        );
        assert_eq!(
            path_to_leaf(3, 3),
            [(0, Direction::Right), (2, Direction::Right)]
        );
    }

    #[test]
    fn a_route_uses_a_patch_only_the_class_has_and_keeps_right_nodes() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        // d = 2, two patches per image. Class 0 images have patches (0,0) and (5,5);
        // class 1 images (0,0) and (9,0): (5,5) is class 0's own part.
        let target = ClassPatches {
            class: 0,
            patches: Tensor::new(&[[[0f32, 0.], [5., 5.]], [[0., 0.], [5., 5.1]]], &dev)?,
        };
        let other = ClassPatches {
            class: 1,
            patches: Tensor::new(&[[[0f32, 0.], [9., 0.]], [[0., 0.1], [9., 0.]]], &dev)?,
        };
        // Node 0 (root) already sends class 0 right (prototype (0,0), present in all);
        // node 2 sends it left (prototype far away) although the path goes right.
        let prototypes = Tensor::new(&[[0f32, 0.], [1., 1.], [50., 50.]], &dev)?;
        let path = path_to_leaf(3, 3);
        let plan = plan_route(&prototypes, &path, &target, std::slice::from_ref(&other))?;
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].0, 2);
        let p = plan[0].1.to_vec1::<f32>()?;
        assert!(
            (p[0] - 5.0).abs() < 1e-6 && (p[1] - 5.0).abs() < 0.2,
            "{p:?}"
        );
        assert!(mean_similarity(&target.patches, &plan[0].1)? > 0.9);
        assert!(mean_similarity(&other.patches, &plan[0].1)? < 0.01);

        // A left turn where class 0 goes right: the new prototype is absent from class 0.
        let path = path_to_leaf(3, 2); // root right, node 2 left
        let prototypes = Tensor::new(&[[0f32, 0.], [1., 1.], [5., 5.]], &dev)?;
        let plan = plan_route(&prototypes, &path, &target, std::slice::from_ref(&other))?;
        assert_eq!(plan.len(), 1);
        let p = plan[0].1.to_vec1::<f32>()?;
        assert_eq!(p, [9.0, 0.0]);
        Ok(())
    }
}
