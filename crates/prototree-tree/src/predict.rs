//! Per-image predictions with their decision paths, for the three routing modes.
//!
//! Greedy routing computes only the prototypes on each image's path (`depth` distance
//! computations instead of `2^depth − 1`); soft and max-leaf routing need every prototype.

use crate::inference::argmax;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::inference::{greedy_path, PathStep, Routing};
use crate::model::{Latent, ProtoTree};
use crate::topology::BranchState;
use crate::{Error, Result};

/// The prediction for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Predicted class.
    pub class_index: usize,
    /// Class distribution (soft: the mixture; greedy / max-leaf: the reached leaf's).
    pub probabilities: Vec<f32>,
    /// Reached leaf (left-to-right index in the complete tree).
    pub leaf: usize,
    /// Decisions from the root to the leaf (pass-throughs of pruned nodes omitted).
    pub path: Vec<PathStep>,
}

impl ProtoTree {
    /// Predicts each image of a normalised batch `(b, 3, h, w)` with `routing`.
    ///
    /// A prediction that comes out NaN or infinite (damaged weights, a hostile input) is
    /// [`Error::NonFinitePrediction`], never output.
    pub fn predict(&self, images: &Tensor, routing: Routing) -> Result<Vec<Prediction>> {
        let latent = self.latent(images, false)?;
        self.predict_latent(&latent, routing)
    }

    /// [`ProtoTree::predict`] on latent patches.
    pub fn predict_latent(&self, latent: &Latent, routing: Routing) -> Result<Vec<Prediction>> {
        let preds = self.predict_latent_unchecked(latent, routing)?;
        for (image, p) in preds.iter().enumerate() {
            let similarities = p.path.iter().map(|s| s.similarity);
            if !p
                .probabilities
                .iter()
                .copied()
                .chain(similarities)
                .all(f32::is_finite)
            {
                return Err(Error::NonFinitePrediction { image });
            }
        }
        Ok(preds)
    }

    fn predict_latent_unchecked(
        &self,
        latent: &Latent,
        routing: Routing,
    ) -> Result<Vec<Prediction>> {
        if routing == Routing::Greedy {
            let paths = self.greedy_paths(latent)?;
            let reached: Vec<usize> = paths.iter().map(|(leaf, _)| *leaf).collect();
            let leaf_dists = self.leaves().distributions_of(&reached)?.to_vec2::<f32>()?;
            return Ok(paths
                .into_iter()
                .zip(leaf_dists)
                .map(|((leaf, path), probabilities)| Prediction {
                    class_index: argmax(&probabilities),
                    probabilities,
                    leaf,
                    path,
                })
                .collect());
        }
        let leaf_dists = self.leaves().distributions()?.to_vec2::<f32>()?;
        let out = self.forward_latent(latent)?;
        let probs = out.probabilities.to_vec2::<f32>()?;
        let pis = out.leaf_path_probs.to_vec2::<f32>()?;
        let routes = out.routing.to_vec2::<f32>()?;
        let topo = self.topology();
        let mut preds = Vec::with_capacity(probs.len());
        for ((p, pi), r) in probs.into_iter().zip(pis).zip(routes) {
            preds.push(match routing {
                Routing::Soft => {
                    let (leaf, path) = greedy_path(topo, &r);
                    Prediction {
                        class_index: argmax(&p),
                        probabilities: p,
                        leaf,
                        path,
                    }
                }
                _ => {
                    let leaf = argmax(&pi);
                    let path = self.path_to_leaf(leaf, &r);
                    let probabilities = leaf_dists[leaf].clone();
                    Prediction {
                        class_index: argmax(&probabilities),
                        probabilities,
                        leaf,
                        path,
                    }
                }
            });
        }
        Ok(preds)
    }

    /// The decisions from the root to `leaf`, with the similarities in `routing_row`.
    fn path_to_leaf(&self, leaf: usize, routing_row: &[f32]) -> Vec<PathStep> {
        let topo = self.topology();
        let mut heaps = Vec::new();
        let mut h = topo.leaf_heap(leaf);
        while h > 0 {
            let parent = (h - 1) / 2;
            heaps.push((parent, h % 2 == 0));
            h = parent;
        }
        heaps
            .into_iter()
            .rev()
            .filter(|(p, _)| topo.branch_state(*p) == BranchState::Decision)
            .map(|(p, right)| PathStep {
                node: topo.node_id(p),
                heap: p,
                similarity: routing_row[p],
                present: right,
            })
            .collect()
    }

    /// Greedy paths computing only the prototypes met on each path (parallel over images;
    /// see [`crate::inference::greedy_paths_path_only`]).
    pub fn greedy_paths(&self, latent: &Latent) -> Result<Vec<(usize, Vec<PathStep>)>> {
        crate::inference::greedy_paths_path_only(
            self.topology(),
            &latent.patches,
            &self.prototypes()?,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::topology::{prune_branch, Direction, Topology};
    use crate::{Leaves, Routing};
    use candle_core::{Device, Tensor};

    #[test]
    fn greedy_path_only_equals_full_greedy() -> anyhow::Result<()> {
        let mut tree = crate::testing::small_cnn_tree(4, 8, 5, 9)?;
        // Prototypes spread so that similarities straddle 0.5.
        let protos = Tensor::randn(0.5f32, 0.25, (15, 8), &Device::Cpu)?;
        tree.set_prototypes(&protos)?;
        tree.set_leaves(Leaves::from_params(
            Tensor::randn(0f32, 3.0, (16, 5), &Device::Cpu)?.relu()?,
        )?)?;
        let mut topo = Topology::complete(4)?;
        prune_branch(&mut topo, 2, Direction::Right);
        tree.set_topology(topo)?;
        let latent = crate::Latent {
            patches: (Tensor::rand(0f32, 1.0, (32, 6, 8), &Device::Cpu)? * 0.8)?,
            height: 2,
            width: 3,
        };
        let greedy = tree.predict_latent(&latent, Routing::Greedy)?;
        let soft = tree.predict_latent(&latent, Routing::Soft)?; // carries the full greedy path
        let mut agree = 0;
        for (g, s) in greedy.iter().zip(&soft) {
            assert_eq!(g.path.len(), s.path.len());
            if g.leaf == s.leaf {
                agree += 1;
            }
            for (a, b) in g.path.iter().zip(&s.path) {
                assert_eq!(a.node, b.node);
                assert!((a.similarity - b.similarity).abs() < 1e-4);
            }
        }
        assert_eq!(agree, 32);
        let max_leaf = tree.predict_latent(&latent, Routing::MaxLeaf)?;
        for p in &max_leaf {
            assert!(p.path.iter().all(|s| s.heap != 2), "pass-through listed");
        }
        Ok(())
    }
}
