//! Leaf re-seeding: the repair of a stalled tree (docs/training.md, "Leaf sharing").
//!
//! A stalled tree routes the images of a class to leaves of other classes (see
//! [`crate::leaf_sharing`]): the class shares a leaf with another at about 1/2 each, or
//! most of its images end in another class's leaf while the leaf it owns is left with a
//! few. Both are stable points of the derivative-free leaf update with the routing
//! gradient: the leaves the images reach give the class nothing more than they already
//! have, so nothing pulls them elsewhere, and the nodes above never learn the part that
//! tells the two classes apart. Re-seeding gives such a class a *spare* leaf — one whose
//! class already has a stronger leaf elsewhere, or a dead leaf — by setting the spare
//! leaf's distribution to that class. From then on the routing gradient pulls the
//! class's images towards it (and the node above it learns to separate them from the
//! class they were confused with), and the leaf update keeps it theirs once they arrive.
//!
//! The spare leaf chosen for a class is the one its images already reach most (the
//! largest summed path probability), so the routing has the least to change; a leaf no
//! path leads to would stay dead. A class is re-seeded
//! only after it has needed a leaf for [`RESEED_PATIENCE`] epochs in a row, and not again
//! within [`RESEED_PATIENCE`] epochs of its last re-seeding, so that its images have time
//! to move.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::leaf_sharing::owner_of;
use crate::Result;

/// Where the training images of each class went over an epoch, per leaf and class.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassLeafTally {
    /// `counts[leaf][class]`: how many of the class's images ended in the leaf (their
    /// most probable leaf, greedy routing).
    pub counts: Vec<Vec<f32>>,
    /// `path_mass[leaf][class]`: the summed path probability of the class's images at
    /// the leaf (soft routing: how well the leaf can be reached).
    pub path_mass: Vec<Vec<f32>>,
}

impl ClassLeafTally {
    /// The tally of one batch as a tensor `(2, leaves, classes)` (counts, then path
    /// mass), to be summed over an epoch.
    ///
    /// # Shapes
    /// - `leaf_path_probs`: `(b, leaves)`, `targets_one_hot`: `(b, classes)`
    pub fn of_batch(leaf_path_probs: &Tensor, targets_one_hot: &Tensor) -> Result<Tensor> {
        let probs = leaf_path_probs.detach().to_dtype(DType::F32)?;
        let targets = targets_one_hot.to_dtype(DType::F32)?;
        let num_leaves = probs.dim(1)?;
        let ended_in = crate::one_hot(&probs.argmax(1)?, num_leaves)?;
        let counts = ended_in.t()?.matmul(&targets)?;
        let mass = probs.t()?.matmul(&targets)?;
        Ok(Tensor::stack(&[counts, mass], 0)?)
    }

    /// The tally from its tensor `(2, leaves, classes)`.
    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        let t = t.to_dtype(DType::F32)?;
        Ok(Self {
            counts: t.get(0)?.to_vec2()?,
            path_mass: t.get(1)?.to_vec2()?,
        })
    }
}
/// One re-seeded leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafReseed {
    /// The leaf (left-to-right index in the complete tree).
    pub leaf: usize,
    /// The class without a leaf that it now serves.
    pub class: usize,
    /// The class it served before (which keeps a stronger leaf); `None` for a dead leaf
    /// that served no class.
    pub previous_class: Option<usize>,
    /// The leaf in which most of the class's images ended before (`None` when none was
    /// seen): the route repair changes only the path below where the two paths part.
    #[serde(default)]
    pub from_leaf: Option<usize>,
    /// The branches (heap indices) on the path to the leaf whose prototypes were set to
    /// route the class there ([`crate::route_repair`]).
    #[serde(default)]
    pub rerouted_nodes: Vec<usize>,
}

/// Epochs in a row a class must need a leaf before it is given one.
pub const RESEED_PATIENCE: usize = 3;

/// One earlier epoch as the re-seeding sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReseedHistory {
    /// The classes that needed a leaf at its end.
    pub needing: Vec<usize>,
    /// The classes given a leaf at its end.
    pub reseeded: Vec<usize>,
}

/// The classes of `current` to re-seed now: those that also needed a leaf in each of the
/// last `RESEED_PATIENCE - 1` epochs of `previous` (oldest first) and were not re-seeded
/// in any of the last `RESEED_PATIENCE - 1`. Fewer earlier epochs than that: none.
pub fn persistently_needing(previous: &[ReseedHistory], current: &[usize]) -> Vec<usize> {
    let wanted = RESEED_PATIENCE - 1;
    if previous.len() < wanted {
        return Vec::new();
    }
    let recent = &previous[previous.len() - wanted..];
    current
        .iter()
        .copied()
        .filter(|c| {
            recent
                .iter()
                .all(|r| r.needing.contains(c) && !r.reseeded.contains(c))
        })
        .collect()
}

/// Depth of the deepest common ancestor of leaves `a` and `b` (`None`: 0, the root).
/// Leaves are numbered left to right in a complete tree, so their common ancestor is
/// given by the common leading bits of their indices.
pub fn common_depth(a: usize, b: Option<usize>, depth: usize) -> usize {
    match b {
        Some(b) => depth.saturating_sub((usize::BITS - (a ^ b).leading_zeros()) as usize),
        None => 0,
    }
}

/// Plans the re-seeding of spare leaves for the classes without a leaf.
///
/// - `distributions[leaf][class]`: the leaf distributions;
/// - `live[leaf]`: whether the leaf is still in the tree (not pruned away);
/// - `tally`: where the class's training images went over an epoch;
/// - `classes_without_leaf`: the classes to give a leaf.
///
/// A spare leaf is a live leaf owned (top class with at least half its mass) by a class
/// that owns another leaf in which more of its images end, or a live leaf owned by no
/// class in which few images end (fewer than half the mean count of a live leaf: a dead
/// leaf, whose distribution has decayed towards uniform; a leaf shared by classes carries
/// their images and is not spare). Spare leaves go to the classes greedily: first the
/// pair whose leaf is nearest to the leaf in which most of the class's images end (the
/// deepest common ancestor: the fewest other classes' routes to change), then the
/// largest path mass; a class gets at most one leaf (never one it
/// owns already), a leaf goes to at most one class, and a class keeps its strongest leaf. Classes left over when the
/// spare leaves run out get none. The result is ordered by leaf.
pub fn plan_reseeds(
    distributions: &[Vec<f32>],
    live: &[bool],
    tally: &ClassLeafTally,
    classes_without_leaf: &[usize],
) -> Vec<LeafReseed> {
    let get = |table: &[Vec<f32>], leaf: usize, class: usize| -> f32 {
        table
            .get(leaf)
            .and_then(|m| m.get(class))
            .copied()
            .unwrap_or(0.0)
    };
    let count = |leaf: usize, class: usize| get(&tally.counts, leaf, class);
    let mass = |leaf: usize, class: usize| get(&tally.path_mass, leaf, class);
    let is_live = |leaf: usize| live.get(leaf).copied().unwrap_or(false);
    // The owner of each live leaf.
    let owner: Vec<Option<usize>> = distributions
        .iter()
        .enumerate()
        .map(|(leaf, d)| if is_live(leaf) { owner_of(d) } else { None })
        .collect();
    // Each owning class's strongest leaf (most of its images end there; the first on
    // ties) stays; its other leaves are spare.
    let mut strongest: BTreeMap<usize, usize> = BTreeMap::new();
    for (leaf, class) in owner.iter().enumerate() {
        let Some(class) = *class else { continue };
        let best = strongest.entry(class).or_insert(leaf);
        if count(leaf, class) > count(*best, class) {
            *best = leaf;
        }
    }
    let mut spare: Vec<bool> = owner
        .iter()
        .enumerate()
        .map(|(leaf, o)| o.is_some_and(|c| strongest.get(&c) != Some(&leaf)))
        .collect();
    let total = |leaf: usize| -> f32 { tally.counts.get(leaf).map_or(0.0, |m| m.iter().sum()) };
    let live_leaves: Vec<usize> = (0..owner.len()).filter(|&l| is_live(l)).collect();
    let mean_mass =
        live_leaves.iter().map(|&l| total(l)).sum::<f32>() / live_leaves.len().max(1) as f32;
    for &leaf in &live_leaves {
        if owner[leaf].is_none() && total(leaf) < 0.5 * mean_mass {
            spare[leaf] = true;
        }
    }
    let mut wanting: Vec<usize> = classes_without_leaf.to_vec();
    wanting.sort_unstable();
    wanting.dedup();
    let depth = owner.len().trailing_zeros() as usize;
    // The leaf in which most of each class's images end.
    let num_classes = tally.counts.first().map_or(0, Vec::len);
    let ended_most: Vec<Option<usize>> = (0..num_classes
        .max(wanting.iter().max().map_or(0, |m| m + 1)))
        .map(|c| {
            (0..owner.len())
                .filter(|&l| is_live(l) && count(l, c) > 0.0)
                .max_by(|&a, &b| count(a, c).total_cmp(&count(b, c)).then(b.cmp(&a)))
        })
        .collect();
    let mut plan = Vec::new();
    loop {
        let best = wanting
            .iter()
            .flat_map(|&class| {
                spare
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| **s)
                    .map(move |(leaf, _)| (leaf, class))
                    .filter(|&(leaf, class)| owner[leaf] != Some(class))
            })
            .max_by(|&(la, ca), &(lb, cb)| {
                let near = |l: usize, c: usize| common_depth(l, ended_most[c], depth);
                near(la, ca)
                    .cmp(&near(lb, cb))
                    .then(mass(la, ca).total_cmp(&mass(lb, cb)))
                    .then(lb.cmp(&la))
                    .then(cb.cmp(&ca))
            });
        let Some((leaf, class)) = best else { break };
        plan.push(LeafReseed {
            leaf,
            class,
            previous_class: owner[leaf],
            from_leaf: ended_most[class],
            rerouted_nodes: Vec::new(),
        });
        spare[leaf] = false;
        wanting.retain(|&c| c != class);
    }
    plan.sort_by_key(|r| r.leaf);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(leaf, class, previous_class)` of each re-seeding.
    fn triples(plan: &[LeafReseed]) -> Vec<(usize, usize, Option<usize>)> {
        plan.iter()
            .map(|r| (r.leaf, r.class, r.previous_class))
            .collect()
    }

    /// A tally whose counts and path mass are both `table`.
    fn same(table: &[Vec<f32>]) -> ClassLeafTally {
        ClassLeafTally {
            counts: table.to_vec(),
            path_mass: table.to_vec(),
        }
    }

    fn one_hot(class: usize, classes: usize) -> Vec<f32> {
        (0..classes).map(|c| f32::from(c == class)).collect()
    }

    #[test]
    fn a_spare_leaf_goes_to_the_class_that_reaches_it_most() {
        // Four leaves, three classes: leaf 0 shared by classes 1 and 2, leaves 1 and 2
        // both class 0 (leaf 1 the stronger), leaf 3 class 1 as well.
        let dist = vec![
            vec![0.0, 0.5, 0.5],
            one_hot(0, 3),
            one_hot(0, 3),
            one_hot(1, 3),
        ];
        let live = vec![true; 4];
        let mass = vec![
            vec![0.0, 5.0, 9.0],
            vec![8.0, 0.0, 0.5],
            vec![2.0, 0.1, 0.4],
            vec![0.0, 4.0, 0.2],
        ];
        // Class 2 has no leaf of its own; the only spare leaf is leaf 2 (class 0's
        // weaker one). Leaf 3 is class 1's only owned leaf: not spare.
        let plan = plan_reseeds(&dist, &live, &same(&mass), &[2]);
        assert_eq!(triples(&plan), vec![(2, 2, Some(0))]);
    }

    #[test]
    fn greedy_by_path_mass_one_leaf_per_class_and_pruned_leaves_never() {
        // Class 0 owns leaves 0, 1, 2 (0 strongest); classes 1 and 2 own none.
        let dist = vec![one_hot(0, 3), one_hot(0, 3), one_hot(0, 3), one_hot(0, 3)];
        let live = vec![true, true, true, false];
        let mass = vec![
            vec![9.0, 0.0, 0.0],
            vec![1.0, 3.0, 2.5],
            vec![1.0, 1.0, 2.0],
            vec![0.0, 9.0, 9.0], // pruned: never chosen
        ];
        let plan = plan_reseeds(&dist, &live, &same(&mass), &[2, 1]);
        // Largest pair first: (leaf 1, class 1) at 3.0; then class 2 takes leaf 2.
        assert_eq!(triples(&plan), vec![(1, 1, Some(0)), (2, 2, Some(0)),]);
    }

    #[test]
    fn a_dead_leaf_is_spare_and_a_shared_one_is_not() {
        // Leaf 0 shared by classes 1 and 2 (their images reach it), leaf 1 class 0's only
        // leaf, leaf 2 dead (uniform, barely reached).
        let third = 1.0 / 3.0;
        let dist = vec![vec![0.0, 0.5, 0.5], one_hot(0, 3), vec![third; 3]];
        let mass = vec![
            vec![0.5, 9.0, 9.0],
            vec![9.0, 0.5, 0.5],
            vec![0.1, 0.2, 0.5],
        ];
        let plan = plan_reseeds(&dist, &[true; 3], &same(&mass), &[1, 2]);
        assert_eq!(triples(&plan), vec![(2, 2, None)]);
    }

    #[test]
    fn a_class_never_gets_a_leaf_it_owns() {
        // Class 0 owns leaves 0 (strongest) and 1 but its images end in leaf 2 (class
        // 1's only leaf): leaf 1 is spare, yet giving it to class 0 changes nothing.
        let dist = vec![one_hot(0, 2), one_hot(0, 2), one_hot(1, 2)];
        let counts = vec![vec![3.0, 0.0], vec![1.0, 0.0], vec![9.0, 8.0]];
        assert!(plan_reseeds(&dist, &[true; 3], &same(&counts), &[0]).is_empty());
    }

    #[test]
    fn patience_needs_the_class_in_each_recent_epoch() {
        let needing = |n: &[usize]| ReseedHistory {
            needing: n.to_vec(),
            reseeded: Vec::new(),
        };
        assert!(persistently_needing(&[needing(&[1])], &[1]).is_empty());
        let mut previous = vec![needing(&[4]), needing(&[1, 2, 5]), needing(&[1, 3, 5])];
        assert_eq!(persistently_needing(&previous, &[1, 2, 3, 5]), [1, 5]);
        // Re-seeded one epoch ago: it waits.
        previous[2].reseeded = vec![5];
        assert_eq!(persistently_needing(&previous, &[1, 2, 3, 5]), [1]);
    }

    #[test]
    fn the_reachable_spare_leaf_wins_over_an_unreached_one() {
        // Depth 2. Class 1 has no leaf of its own; its images end in leaf 0 (class 0's).
        // Leaves 2 and 3 are dead and equally far from leaf 0, but class 1's images reach
        // leaf 3 with some path probability and leaf 2 barely. Leaf 1 is class 2's only
        // leaf.
        let third = 1.0 / 3.0;
        let dist = vec![one_hot(0, 3), one_hot(2, 3), vec![third; 3], vec![third; 3]];
        let tally = ClassLeafTally {
            counts: vec![
                vec![9.0, 8.0, 0.0],
                vec![0.0, 0.0, 9.0],
                vec![0.0; 3],
                vec![0.0; 3],
            ],
            path_mass: vec![
                vec![8.0, 6.0, 0.5],
                vec![0.8, 0.5, 8.3],
                vec![0.1, 0.1, 0.1],
                vec![0.1, 1.5, 0.1],
            ],
        };
        let plan = plan_reseeds(&dist, &[true; 4], &tally, &[1]);
        assert_eq!(triples(&plan), vec![(3, 1, None)]);
    }

    #[test]
    fn a_batch_tally_counts_greedy_leaves_and_sums_path_mass() -> anyhow::Result<()> {
        let dev = candle_core::Device::Cpu;
        let probs = Tensor::new(&[[0.7f32, 0.3], [0.4, 0.6], [0.9, 0.1]], &dev)?;
        let targets = Tensor::new(&[[1f32, 0.0], [1.0, 0.0], [0.0, 1.0]], &dev)?;
        let tally = ClassLeafTally::from_tensor(&ClassLeafTally::of_batch(&probs, &targets)?)?;
        assert_eq!(tally.counts, vec![vec![1.0, 1.0], vec![1.0, 0.0]]);
        let want = [[1.1f32, 0.9], [0.9, 0.1]];
        for (row, w) in tally.path_mass.iter().zip(want) {
            for (a, b) in row.iter().zip(w) {
                assert!((a - b).abs() < 1e-6, "{row:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn common_ancestor_depth_by_hand() {
        // Depth 3: leaves 0..8. 0 and 1 are siblings (depth 2), 0 and 3 share depth 1,
        // 0 and 4 only the root.
        assert_eq!(common_depth(0, Some(1), 3), 2);
        assert_eq!(common_depth(0, Some(3), 3), 1);
        assert_eq!(common_depth(0, Some(4), 3), 0);
        assert_eq!(common_depth(5, Some(5), 3), 3);
        assert_eq!(common_depth(5, None, 3), 0);
    }

    #[test]
    fn the_spare_leaf_nearest_to_the_class_wins() {
        // Depth 2. Class 1's images end in leaf 0 (class 0's). Leaves 1 (sibling of 0)
        // and 3 are dead; class 1 reaches leaf 3 more, but leaf 1 is nearer.
        let q = 0.25;
        let dist = vec![vec![1.0, 0.0], vec![q; 2], vec![0.0, 1.0], vec![q; 2]];
        let tally = ClassLeafTally {
            counts: vec![
                vec![9.0, 8.0],
                vec![0.0, 0.0],
                vec![0.0, 1.0],
                vec![0.0, 0.0],
            ],
            path_mass: vec![
                vec![8.0, 6.0],
                vec![0.5, 0.5],
                vec![0.0, 1.0],
                vec![0.5, 1.5],
            ],
        };
        let plan = plan_reseeds(&dist, &[true; 4], &tally, &[1]);
        assert_eq!(triples(&plan), [(1, 1, None)]);
        assert_eq!(plan[0].from_leaf, Some(0));
    }

    #[test]
    fn no_spare_leaf_no_plan() {
        // Every owned leaf is its class's only one.
        let dist = vec![one_hot(0, 3), one_hot(1, 3)];
        let mass = vec![vec![1.0, 0.0, 0.5], vec![0.0, 1.0, 0.5]];
        assert!(plan_reseeds(&dist, &[true, true], &same(&mass), &[2]).is_empty());
        // Nothing to repair.
        assert!(plan_reseeds(&dist, &[true, true], &same(&mass), &[]).is_empty());
        // Ragged or short inputs do not panic.
        assert!(plan_reseeds(&dist, &[true], &ClassLeafTally::default(), &[2, 7]).is_empty());
    }
}
