//! Merging decisions that decide nothing: a decision node all of whose reachable leaves
//! predict the same class sends every image to that class whichever way it answers, so its
//! question (and every question below it) is left out of the explanation.
//!
//! Such a node is replaced by the child holding the most confident leaf, as pruning
//! replaces a parent by a child (spec §3), until the class's best leaf is reached. Greedy
//! predictions do not change (every leaf the node could route to has the same top class);
//! soft and max-leaf predictions may move slightly because the other leaves' distributions
//! leave the mixture. The root is never replaced.

use prototree_tree::topology::{prune_branch, BranchState, Direction, NodeId, Topology};
use prototree_tree::ProtoTree;

use crate::Result;

/// Per heap node, the one top class of all reachable leaves below it (`None` when they
/// differ or there are none), and the best max-probability of those leaves.
fn single_class_below(
    topo: &Topology,
    leaf_top: &[usize],
    leaf_max: &[f32],
) -> (Vec<Option<usize>>, Vec<f32>) {
    let nb = topo.num_branches();
    let reach = topo.reachable_heap();
    let n = reach.len();
    let mut class: Vec<Option<usize>> = vec![None; n];
    let mut mixed = vec![false; n];
    let mut best = vec![f32::NEG_INFINITY; n];
    for h in (0..n).rev() {
        if !reach[h] {
            continue;
        }
        if h >= nb {
            class[h] = leaf_top.get(h - nb).copied();
            best[h] = leaf_max.get(h - nb).copied().unwrap_or(f32::NEG_INFINITY);
            continue;
        }
        for c in [2 * h + 1, 2 * h + 2] {
            if c >= n || !reach[c] {
                continue;
            }
            best[h] = best[h].max(best[c]);
            mixed[h] |= mixed[c];
            match (class[h], class[c]) {
                (_, None) => {}
                (None, Some(k)) => class[h] = Some(k),
                (Some(a), Some(b)) if a != b => mixed[h] = true,
                _ => {}
            }
        }
    }
    let single = (0..n)
        .map(|h| if mixed[h] { None } else { class[h] })
        .collect();
    (single, best)
}

/// Replaces, top down, every non-root decision of `topo` whose reachable leaves all have
/// the same top class by the child holding the most confident of them; returns the
/// replaced nodes in the order they went.
pub fn merge_in_topology(topo: &mut Topology, leaf_top: &[usize], leaf_max: &[f32]) -> Vec<NodeId> {
    let (single, best) = single_class_below(topo, leaf_top, leaf_max);
    let mut merged = Vec::new();
    // Heap order visits a parent before its children; a kept child is itself single-class
    // and is replaced in turn, down to the best leaf.
    let branches = topo.num_branches();
    for (h, class) in single.iter().enumerate().take(branches).skip(1) {
        if topo.branch_state(h) != BranchState::Decision || class.is_none() {
            continue;
        }
        let (l, r) = (2 * h + 1, 2 * h + 2);
        let keep = if best[r] > best[l] {
            Direction::Right
        } else {
            Direction::Left
        };
        merged.push(topo.node_id(h));
        prune_branch(topo, h, keep);
    }
    merged
}

/// [`merge_in_topology`] on `model`'s tree, with its leaves' top classes.
pub fn merge_same_class_decisions(model: &mut ProtoTree) -> Result<Vec<NodeId>> {
    let dist = model.leaves().distributions()?;
    let leaf_top = prototree_tree::inference::leaf_top_classes(&dist)?;
    let leaf_max: Vec<f32> = dist.max(1)?.to_vec1::<f32>()?;
    let mut topo = model.topology().clone();
    let merged = merge_in_topology(&mut topo, &leaf_top, &leaf_max);
    if !merged.is_empty() {
        model.set_topology(topo)?;
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_same_class_subtree_shrinks_to_its_best_leaf() -> anyhow::Result<()> {
        // Depth 2: root 0, branches 1 (left) and 2 (right); leaves 3..6 = leaves 0..3.
        // Leaves 0, 1 (below node 1) both predict class 1; leaves 2, 3 predict 0 and 2.
        let mut topo = Topology::complete(2)?;
        let merged = merge_in_topology(&mut topo, &[1, 1, 0, 2], &[0.6, 0.9, 0.8, 0.7]);
        assert_eq!(merged, vec![topo.node_id(1)]);
        // Node 1 now passes to its right child, the 0.9 leaf; node 2 still decides.
        assert_eq!(topo.branch_state(1), BranchState::PassRight);
        assert_eq!(topo.branch_state(2), BranchState::Decision);
        assert_eq!(topo.num_decisions(), 2);
        assert_eq!(topo.live_leaves(), vec![false, true, true, true]);
        Ok(())
    }

    #[test]
    fn nested_same_class_decisions_go_in_one_call_and_the_root_stays() -> anyhow::Result<()> {
        // Depth 3, every leaf below node 1 predicts class 2; the root's subtrees differ.
        let mut topo = Topology::complete(3)?;
        let top = [2, 2, 2, 2, 0, 1, 0, 1];
        let max = [0.5, 0.6, 0.95, 0.7, 0.9, 0.9, 0.9, 0.9];
        let merged = merge_in_topology(&mut topo, &top, &max);
        // Node 1 (heap 1) keeps its right child (heap 4, holding the 0.95 leaf), which is
        // replaced by its left child (that leaf).
        assert_eq!(merged.len(), 2);
        assert_eq!(topo.branch_state(1), BranchState::PassRight);
        assert_eq!(topo.branch_state(4), BranchState::PassLeft);
        assert_eq!(topo.num_decisions(), 4); // root, heap 2, 5, 6
        let live: Vec<usize> = topo
            .live_leaves()
            .iter()
            .enumerate()
            .filter(|(_, l)| **l)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(live, vec![2, 4, 5, 6, 7]);
        // A tree of one class everywhere keeps its root decision.
        let mut all_same = Topology::complete(1)?;
        assert!(merge_in_topology(&mut all_same, &[3, 3], &[0.9, 0.8]).is_empty());
        // Nothing to merge: unchanged.
        let mut distinct = Topology::complete(2)?;
        assert!(merge_in_topology(&mut distinct, &[0, 1, 2, 3], &[0.9; 4]).is_empty());
        Ok(())
    }
}
