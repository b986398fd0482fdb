//! Decision faithfulness and explanation size: what deleting the matched patch of a
//! "present" decision does to the prediction, and how large explanations are.

use std::collections::{BTreeMap, BTreeSet};

use prototree_tree::topology::{BranchState, Topology};
use serde::{Deserialize, Serialize};

/// Similarity above which a decision goes to its "present" child.
pub const PRESENT_THRESHOLD: f32 = 0.5;

/// The effect of deleting one decision's matched patch from one image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Deletion {
    /// Whether the greedy prediction changed.
    pub class_changed: bool,
    /// The node's similarity before deletion.
    pub similarity_before: f32,
    /// The node's similarity after deletion.
    pub similarity_after: f32,
}

/// Aggregated deletions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DeletionSummary {
    /// Number of deletions (image × "present" decision on its greedy path).
    pub deletions: usize,
    /// Share of deletions that changed the greedy prediction.
    pub prediction_change_rate: f64,
    /// Share of deletions after which the node's similarity is at most 0.5 (the decision
    /// itself flips to "absent").
    pub decision_flip_rate: f64,
    /// Mean drop of the node's similarity (before − after).
    pub mean_similarity_drop: f64,
}

/// Summarises deletions (all zero for none).
pub fn summarize_deletions(deletions: &[Deletion]) -> DeletionSummary {
    if deletions.is_empty() {
        return DeletionSummary::default();
    }
    let n = deletions.len() as f64;
    DeletionSummary {
        deletions: deletions.len(),
        prediction_change_rate: deletions.iter().filter(|d| d.class_changed).count() as f64 / n,
        decision_flip_rate: deletions
            .iter()
            .filter(|d| d.similarity_after <= PRESENT_THRESHOLD)
            .count() as f64
            / n,
        mean_similarity_drop: deletions
            .iter()
            .map(|d| f64::from(d.similarity_before - d.similarity_after))
            .sum::<f64>()
            / n,
    }
}

/// Mean over the classes that occur in `paths` of the number of distinct prototypes
/// (prototype rows) on the paths of that class. `paths`: (class, rows on the path).
pub fn distinct_prototypes_per_class(paths: &[(usize, Vec<usize>)]) -> f64 {
    let mut by_class: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (c, rows) in paths {
        by_class.entry(*c).or_default().extend(rows.iter().copied());
    }
    if by_class.is_empty() {
        return 0.0;
    }
    by_class.values().map(|s| s.len() as f64).sum::<f64>() / by_class.len() as f64
}

/// The same from the tree alone: for each class that is the top class of some reachable
/// leaf, the distinct decisions on the root-to-leaf paths of its leaves; the mean.
pub fn prototypes_per_class_in_tree(topo: &Topology, leaf_top: &[usize]) -> f64 {
    let live = topo.live_leaves();
    let mut paths = Vec::new();
    for (j, &alive) in live.iter().enumerate() {
        let Some(&c) = leaf_top.get(j).filter(|_| alive) else {
            continue;
        };
        let mut rows = Vec::new();
        let mut h = topo.leaf_heap(j);
        while h > 0 {
            h = (h - 1) / 2;
            if topo.branch_state(h) == BranchState::Decision {
                rows.push(h);
            }
        }
        paths.push((c, rows));
    }
    distinct_prototypes_per_class(&paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_summary() {
        let d = [
            Deletion {
                class_changed: true,
                similarity_before: 0.9,
                similarity_after: 0.3,
            },
            Deletion {
                class_changed: false,
                similarity_before: 0.8,
                similarity_after: 0.8,
            },
        ];
        let s = summarize_deletions(&d);
        assert_eq!(s.deletions, 2);
        assert_eq!(s.prediction_change_rate, 0.5);
        assert_eq!(s.decision_flip_rate, 0.5);
        assert!((s.mean_similarity_drop - 0.3).abs() < 1e-6);
        assert_eq!(summarize_deletions(&[]), DeletionSummary::default());
    }

    #[test]
    fn explanation_size() {
        let paths = vec![(0, vec![0, 1]), (0, vec![0, 2]), (1, vec![0])];
        assert_eq!(distinct_prototypes_per_class(&paths), 2.0);
        assert_eq!(distinct_prototypes_per_class(&[]), 0.0);
        // Depth 2, leaves 0..4 with classes 0, 0, 1, 2: class 0 uses {0, 1}, class 1
        // {0, 2}, class 2 {0, 2} → mean 2.
        let topo = Topology::complete(2).unwrap();
        assert_eq!(prototypes_per_class_in_tree(&topo, &[0, 0, 1, 2]), 2.0);
    }
}
