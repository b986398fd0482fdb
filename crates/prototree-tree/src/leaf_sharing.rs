//! How the leaves share the classes: the signature of a stalled run.
//!
//! ProtoTree's leaf update together with the gradient routing has stable points where one
//! leaf serves two or three classes (its distribution settles near 1/2 or 1/3 each) and
//! those classes have no leaf of their own; such a run stalls below full training
//! accuracy. [`LeafSharing`] records, per epoch, each live leaf's top classes, the classes
//! that are the majority class of no leaf, and the entropy of the routing over leaves.

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::model::ProtoTree;
use crate::Result;

/// Top classes kept per leaf.
pub const TOP_CLASSES_PER_LEAF: usize = 3;

/// The share of a leaf's distribution its top class needs to own the leaf.
pub const OWNER_MASS: f32 = 0.5;

/// The class that owns a leaf with distribution `distribution` (its top class, when it
/// holds at least [`OWNER_MASS`]; the lower class on ties), if any.
pub fn owner_of(distribution: &[f32]) -> Option<usize> {
    let (class, top) = distribution
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))?;
    (*top >= OWNER_MASS).then_some(class)
}

/// A class and the probability mass a leaf gives it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassMass {
    /// Class index.
    pub class: usize,
    /// Its probability in the leaf's distribution.
    pub mass: f32,
}

/// One live leaf's top classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeafClasses {
    /// The leaf (left-to-right index in the complete tree).
    pub leaf: usize,
    /// Its [`TOP_CLASSES_PER_LEAF`] most probable classes, most probable first.
    pub top: Vec<ClassMass>,
}

/// The leaf-sharing signature of a tree at one moment of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeafSharing {
    /// Every live leaf with its top classes.
    pub leaves: Vec<LeafClasses>,
    /// Classes that hold at least half the mass of no live leaf: they have no leaf of
    /// their own. After successful training this is empty.
    pub classes_without_leaf: Vec<usize>,
    /// Live leaves whose most probable class holds less than half of their mass.
    pub shared_leaves: usize,
    /// Classes fewer than half of whose training images ended (greedy routing: their
    /// most probable leaf) in a leaf the class owns, over the epoch: they are routed to
    /// other classes' leaves, although they may own one. Empty when not measured (see
    /// [`LeafSharing::measure_misrouting`]; logs of builds before 2026-12-06).
    #[serde(default)]
    pub misrouted_classes: Vec<usize>,
    /// Entropy (nats) of the distribution over leaves of a training image, averaged over
    /// the images of each batch and then over the epoch's batches (`ln(leaves)` for
    /// uniform routing, 0 when every image reaches one leaf); `None` when not measured.
    pub routing_entropy: Option<f64>,
}

impl LeafSharing {
    /// The signature of `tree`'s leaves, with the measured `routing_entropy`.
    pub fn of(tree: &ProtoTree, routing_entropy: Option<f64>) -> Result<Self> {
        let dist = tree.leaves().distributions()?.to_vec2::<f32>()?;
        let live = tree.topology().live_leaves();
        let num_classes = tree.num_classes();
        let mut owned = vec![false; num_classes];
        let mut leaves = Vec::new();
        let mut shared_leaves = 0;
        for (leaf, d) in dist.iter().enumerate() {
            if !live.get(leaf).copied().unwrap_or(false) {
                continue;
            }
            let mut order: Vec<usize> = (0..d.len()).collect();
            order.sort_by(|&a, &b| d[b].total_cmp(&d[a]).then(a.cmp(&b)));
            let top: Vec<ClassMass> = order
                .iter()
                .take(TOP_CLASSES_PER_LEAF)
                .map(|&class| ClassMass {
                    class,
                    mass: d[class],
                })
                .collect();
            match owner_of(d) {
                Some(class) => {
                    if let Some(o) = owned.get_mut(class) {
                        *o = true;
                    }
                }
                None => shared_leaves += 1,
            }
            leaves.push(LeafClasses { leaf, top });
        }
        Ok(Self {
            leaves,
            classes_without_leaf: (0..num_classes).filter(|&c| !owned[c]).collect(),
            shared_leaves,
            misrouted_classes: Vec::new(),
            routing_entropy,
        })
    }

    /// Fills [`LeafSharing::misrouted_classes`] from `class_leaf_counts[leaf][class]`, how
    /// many of each class's training images ended in each leaf (over an epoch). A class
    /// none of whose images were seen is not misrouted.
    pub fn measure_misrouting(&mut self, class_leaf_counts: &[Vec<f32>]) {
        let num_classes = class_leaf_counts.first().map_or(0, Vec::len);
        let mut total = vec![0f64; num_classes];
        let mut own = vec![0f64; num_classes];
        for leaf in &self.leaves {
            let Some(mass) = class_leaf_counts.get(leaf.leaf) else {
                continue;
            };
            for (c, m) in mass.iter().enumerate() {
                total[c] += f64::from(*m);
            }
            if let Some(owner) = leaf.top.first().filter(|t| t.mass >= OWNER_MASS) {
                if let Some(m) = mass.get(owner.class) {
                    own[owner.class] += f64::from(*m);
                }
            }
        }
        self.misrouted_classes = (0..num_classes)
            .filter(|&c| total[c] > 0.0 && own[c] < 0.5 * total[c])
            .collect();
    }

    /// The classes to give a leaf: those without one and the misrouted ones, in order.
    pub fn classes_needing_a_leaf(&self) -> Vec<usize> {
        let mut classes: Vec<usize> = self
            .classes_without_leaf
            .iter()
            .chain(&self.misrouted_classes)
            .copied()
            .collect();
        classes.sort_unstable();
        classes.dedup();
        classes
    }
}

/// The mean over the images of a batch of the entropy (nats) of their distribution over
/// leaves, from the path probabilities `(batch, leaves)`.
pub fn routing_entropy(leaf_path_probs: &Tensor) -> Result<f64> {
    let p = leaf_path_probs.to_dtype(DType::F32)?;
    // p·ln p with 0·ln 0 = 0: the log of max(p, tiny) is finite and the product is 0.
    let log_p = p.maximum(f32::MIN_POSITIVE)?.log()?;
    let h = (p * log_p)?.sum(D::Minus1)?.neg()?;
    Ok(f64::from(h.mean_all()?.to_scalar::<f32>()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{prune_branch, Direction, Topology};
    use crate::Leaves;
    use candle_core::Device;

    #[test]
    fn a_shared_leaf_leaves_its_classes_without_a_leaf() -> anyhow::Result<()> {
        // Depth 2: four leaves, three classes. Leaf 0 owns class 0, leaf 1 is shared by
        // classes 1 and 2 (0.45 / 0.45), leaf 2 owns class 0 again, leaf 3 is pruned away.
        let mut t = crate::testing::small_cnn_tree(2, 4, 3, 0)?;
        let probs = [
            [0.8f32, 0.1, 0.1],
            [0.1, 0.45, 0.45],
            [0.6, 0.3, 0.1],
            [0.0, 0.0, 1.0],
        ];
        let logits: Vec<f32> = probs.iter().flatten().map(|p| p.max(1e-6).ln()).collect();
        t.set_leaves(Leaves::from_params(Tensor::from_vec(
            logits,
            (4, 3),
            &Device::Cpu,
        )?)?)?;
        let mut topo = Topology::complete(2)?;
        // Node 2 (heap) keeps its left child only: leaf 3 is unreachable.
        prune_branch(&mut topo, 2, Direction::Left);
        t.set_topology(topo)?;
        let s = LeafSharing::of(&t, Some(0.5))?;
        assert_eq!(
            s.leaves.iter().map(|l| l.leaf).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(s.leaves[0].top[0].class, 0);
        assert!((s.leaves[0].top[0].mass - 0.8).abs() < 1e-5);
        // Ties keep the lower class first.
        assert_eq!(
            s.leaves[1].top.iter().map(|c| c.class).collect::<Vec<_>>(),
            [1, 2, 0]
        );
        assert_eq!(s.classes_without_leaf, [1, 2]);
        assert_eq!(s.shared_leaves, 1);
        assert_eq!(s.routing_entropy, Some(0.5));
        assert!(s.misrouted_classes.is_empty());
        // Class 0's images reach its leaves 0 and 2 with 2 of 5; class 2's reach only
        // the shared leaf; class 1's were not seen.
        let mut s = s;
        s.measure_misrouting(&[
            vec![1.0, 0.0, 0.0],
            vec![3.0, 0.0, 4.0],
            vec![1.0, 0.0, 0.0],
            vec![9.0, 0.0, 0.0], // pruned away: not counted
        ]);
        assert_eq!(s.misrouted_classes, [0, 2]);
        assert_eq!(s.classes_needing_a_leaf(), [0, 1, 2]);
        Ok(())
    }

    #[test]
    fn routing_entropy_is_zero_for_one_leaf_and_ln_n_for_uniform() -> anyhow::Result<()> {
        let p = Tensor::new(
            &[[1f32, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]],
            &Device::Cpu,
        )?;
        let h = routing_entropy(&p)?;
        assert!((h - 4f64.ln() / 2.0).abs() < 1e-6, "{h}");
        Ok(())
    }
}
