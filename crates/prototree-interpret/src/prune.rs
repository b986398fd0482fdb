//! Pruning (spec §3): remove every subtree whose leaves are all near-uniform.
//!
//! A node is prunable when every reachable leaf below it has max class probability ≤ τ.
//! Prunable nodes under a prunable ancestor are skipped; for each remaining node `N` whose
//! parent `P` is not the root, `N`'s sibling takes `P`'s place: `N`'s subtree and `P`'s
//! prototype leave the tree. The prototype tensor keeps every row; pruned rows are unused.

use prototree_tree::topology::{prune_branch, BranchState, Direction, NodeId, Topology};
use prototree_tree::ProtoTree;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What pruning did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    /// The threshold.
    pub tau: f32,
    /// Decision nodes (prototypes in use) before.
    pub decisions_before: usize,
    /// Decision nodes after.
    pub decisions_after: usize,
    /// Reachable leaves before.
    pub leaves_before: usize,
    /// Reachable leaves after.
    pub leaves_after: usize,
    /// Roots of the removed subtrees.
    pub removed_subtrees: Vec<NodeId>,
    /// Decision nodes replaced by a child (their prototypes are gone).
    pub replaced_parents: Vec<NodeId>,
    /// Decision nodes merged afterwards because all their leaves predict one class
    /// ([`crate::merge`]; empty unless asked for).
    #[serde(default)]
    pub merged_decisions: Vec<NodeId>,
    /// Decision nodes collapsed because every training image answers them alike
    /// ([`crate::collapse`]; empty unless asked for).
    #[serde(default)]
    pub collapsed_decisions: Vec<NodeId>,
}

impl PruneReport {
    /// Records decisions merged after pruning ([`crate::merge`]) and the tree they left.
    pub fn record_merge(&mut self, merged: Vec<NodeId>, after: &Topology) {
        self.merged_decisions = merged;
        self.decisions_after = after.num_decisions();
        self.leaves_after = after.num_live_leaves();
    }

    /// Records decisions collapsed afterwards ([`crate::collapse`]) and the tree they left.
    pub fn record_collapse(&mut self, collapsed: Vec<NodeId>, after: &Topology) {
        self.collapsed_decisions = collapsed;
        self.decisions_after = after.num_decisions();
        self.leaves_after = after.num_live_leaves();
    }
}

/// The nearest real decision above heap node `h`, and the direction from it towards `h`.
fn decision_parent(topo: &Topology, h: usize) -> Option<(usize, Direction)> {
    let mut x = h;
    while let Some((parent, dir)) = Topology::parent(x) {
        if topo.branch_state(parent) == BranchState::Decision {
            return Some((parent, dir));
        }
        x = parent;
    }
    None
}

/// Which heap nodes are prunable given each leaf's max class probability.
pub fn prunable_nodes(topo: &Topology, leaf_max: &[f32], tau: f32) -> Vec<bool> {
    let nb = topo.num_branches();
    let reach = topo.reachable_heap();
    let n = reach.len();
    // all_low[h]: every reachable leaf below h is ≤ τ; has_leaf[h]: any reachable leaf.
    let mut all_low = vec![true; n];
    let mut has_leaf = vec![false; n];
    for h in (0..n).rev() {
        if !reach[h] {
            continue;
        }
        if h >= nb {
            has_leaf[h] = true;
            all_low[h] = leaf_max[h - nb] <= tau;
        } else {
            for c in [2 * h + 1, 2 * h + 2] {
                if reach[c] {
                    has_leaf[h] |= has_leaf[c];
                    all_low[h] &= all_low[c];
                }
            }
        }
    }
    (0..n)
        .map(|h| reach[h] && has_leaf[h] && all_low[h])
        .collect()
}

/// Prunes `model` in place with threshold `tau` (the reference's default is 0.01).
pub fn prune(model: &mut ProtoTree, tau: f32) -> Result<PruneReport> {
    if !(tau.is_finite() && (0.0..=1.0).contains(&tau)) {
        return Err(Error::Invalid(format!("tau must be in [0, 1], got {tau}")));
    }
    let leaf_max: Vec<f32> = model.leaves().distributions()?.max(1)?.to_vec1::<f32>()?;
    let before = model.topology().clone();
    let prunable = prunable_nodes(&before, &leaf_max, tau);
    // Keep only the topmost prunable nodes: those whose effective ancestors are not prunable.
    let mut top = Vec::new();
    for h in 0..prunable.len() {
        if !prunable[h] {
            continue;
        }
        let mut x = h;
        let mut under_prunable = false;
        while x > 0 {
            x = (x - 1) / 2;
            if prunable[x] {
                under_prunable = true;
                break;
            }
        }
        if !under_prunable {
            top.push(h);
        }
    }
    let mut topo = before.clone();
    let mut removed = Vec::new();
    let mut replaced = Vec::new();
    for h in top {
        let Some((parent, dir)) = decision_parent(&topo, h) else {
            continue; // the root itself: nothing is removed
        };
        if parent == 0 {
            continue; // the reference never replaces the root
        }
        let keep = match dir {
            Direction::Left => Direction::Right,
            Direction::Right => Direction::Left,
        };
        removed.push(topo.node_id(h));
        replaced.push(topo.node_id(parent));
        prune_branch(&mut topo, parent, keep);
    }
    let report = PruneReport {
        tau,
        decisions_before: before.num_decisions(),
        decisions_after: topo.num_decisions(),
        leaves_before: before.num_live_leaves(),
        leaves_after: topo.num_live_leaves(),
        removed_subtrees: removed,
        replaced_parents: replaced,
        merged_decisions: Vec::new(),
        collapsed_decisions: Vec::new(),
    };
    model.set_topology(topo)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use prototree_backbone::BackboneKind;
    use prototree_tree::{Leaves, TreeConfig};

    fn tree_with_leaves(depth: usize, peaked: &[bool]) -> ProtoTree {
        let k = 4;
        let cfg = TreeConfig {
            backbone: BackboneKind::SmallCnn,
            depth,
            proto_dim: 4,
            num_classes: k,
        }
        .check()
        .unwrap();
        let mut t = ProtoTree::new(&cfg, &Device::Cpu, 0).unwrap();
        let mut params = vec![0f32; peaked.len() * k];
        for (l, p) in peaked.iter().enumerate() {
            if *p {
                params[l * k + l % k] = 10.0;
            }
        }
        let p = Tensor::from_vec(params, (peaked.len(), k), &Device::Cpu).unwrap();
        t.set_leaves(Leaves::from_params(p).unwrap()).unwrap();
        t
    }

    #[test]
    fn uniform_pair_is_removed_and_parent_replaced() {
        // Depth 3: leaves 2 and 3 (children of heap 4) uniform -> heap 4 prunable; its parent
        // heap 1 is replaced by heap 3 (the sibling).
        let mut t = tree_with_leaves(3, &[true, true, false, false, true, true, true, true]);
        let r = prune(&mut t, 0.3).unwrap();
        let topo = t.topology();
        assert_eq!(topo.branch_state(1), BranchState::PassLeft);
        assert_eq!(topo.branch_state(4), BranchState::Removed);
        assert_eq!(r.decisions_before, 7);
        assert_eq!(r.decisions_after, 5);
        assert_eq!(r.leaves_after, 6);
        assert_eq!(r.removed_subtrees, vec![topo.node_id(4)]);
        assert_eq!(r.replaced_parents, vec![topo.node_id(1)]);
    }

    #[test]
    fn single_uniform_leaf_goes_with_its_parent() {
        let mut t = tree_with_leaves(2, &[true, false, true, true]);
        let r = prune(&mut t, 0.3).unwrap();
        // Leaf 1 (heap 4) is prunable; parent heap 1 is replaced by leaf 0 (heap 3).
        assert_eq!(t.topology().branch_state(1), BranchState::PassLeft);
        assert_eq!(r.decisions_after, 2);
        assert_eq!(t.topology().live_leaves(), vec![true, false, true, true]);
    }

    #[test]
    fn root_is_never_replaced_and_peaked_trees_are_untouched() {
        // Whole left half uniform: heap 1 is prunable, its parent is the root -> nothing.
        let mut t = tree_with_leaves(2, &[false, false, true, true]);
        let r = prune(&mut t, 0.3).unwrap();
        assert_eq!(r.decisions_after, 3);
        let mut t = tree_with_leaves(2, &[true, true, true, true]);
        assert_eq!(prune(&mut t, 0.3).unwrap().decisions_after, 3);
        assert!(prune(&mut t, f32::NAN).is_err());
    }

    #[test]
    fn pruning_twice_is_stable() {
        let mut t = tree_with_leaves(3, &[true, false, false, false, true, true, false, true]);
        prune(&mut t, 0.3).unwrap();
        let once = t.topology().clone();
        let r = prune(&mut t, 0.3).unwrap();
        assert!(r.decisions_after <= once.num_decisions());
        assert!(t.topology().num_decisions() >= 1);
    }
}
