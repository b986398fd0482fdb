//! The shape of a (possibly pruned) prototype tree.
//!
//! A tree of depth `d` is stored as the *complete* binary tree of that depth, numbered in
//! level order ("heap" order: root 0, children of `h` are `2h + 1` and `2h + 2`), so routing
//! can run level by level over contiguous slices. Branch `h` owns prototype row `h`; leaf `j`
//! (left to right) is heap node `2^d − 1 + j`.
//!
//! Pruning (spec §3) replaces a parent by one of its children. In the complete tree this is
//! the same as making the parent a pass-through that always routes to the kept child, and
//! marking the other subtree removed: path probabilities, outputs and gradients are then
//! exactly those of the pruned tree, and the vectorised routing stays unchanged.
//!
//! Public node identifiers ([`NodeId`]) use the reference's numbering: pre-order, root 0,
//! left subtree first, branches and leaves numbered together.

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Result};

/// Deepest tree supported (2^16 leaves).
pub const MAX_DEPTH: usize = 16;

/// A node of the complete tree, in the reference's pre-order numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a branch of the complete tree does after pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BranchState {
    /// A real decision: right ("present") with probability = similarity.
    Decision,
    /// Pruned away: always routes to the left child, which took its place.
    PassLeft,
    /// Pruned away: always routes to the right child, which took its place.
    PassRight,
    /// Inside a removed subtree: never reached.
    Removed,
}

/// Which child of a decision a path takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// The prototype is absent (probability 1 − similarity).
    Left,
    /// The prototype is present (probability = similarity).
    Right,
}

/// The tree shape: depth and the state of each branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    depth: usize,
    branch_states: Vec<BranchState>,
}

impl Topology {
    /// The complete tree of `depth` (no pruning).
    pub fn complete(depth: usize) -> std::result::Result<Self, ConfigError> {
        if depth == 0 || depth > MAX_DEPTH {
            return Err(ConfigError::Depth {
                max: MAX_DEPTH,
                got: depth,
            });
        }
        Ok(Self {
            depth,
            branch_states: vec![BranchState::Decision; (1 << depth) - 1],
        })
    }

    /// A topology from explicit branch states (as stored in `tree.bin`), checked for
    /// consistency: a removed branch's children are removed, and the children of
    /// reachable pass-through branches are reachable as the state says.
    pub fn from_states(depth: usize, branch_states: Vec<BranchState>) -> Result<Self> {
        let complete = Self::complete(depth)?;
        if branch_states.len() != complete.branch_states.len() {
            return Err(crate::Error::ShapeMismatch {
                tensor: "branch_states".into(),
                expected: vec![complete.branch_states.len()],
                got: vec![branch_states.len()],
            });
        }
        let topo = Self {
            depth,
            branch_states,
        };
        let reach = topo.reachable_heap();
        for (h, state) in topo.branch_states.iter().enumerate() {
            let reachable = reach[h];
            if reachable == (*state == BranchState::Removed) {
                return Err(crate::Error::Data(format!(
                    "branch {} is {:?} but is {}reachable",
                    topo.node_id(h),
                    state,
                    if reachable { "" } else { "not " }
                )));
            }
        }
        if topo.num_decisions() == 0 {
            return Err(crate::Error::Data("the tree has no decision left".into()));
        }
        Ok(topo)
    }

    /// Depth of the complete tree.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Number of branches of the complete tree (= prototype rows).
    pub fn num_branches(&self) -> usize {
        self.branch_states.len()
    }

    /// Number of leaves of the complete tree.
    pub fn num_leaves(&self) -> usize {
        1 << self.depth
    }

    /// Branch states, in heap order.
    pub fn branch_states(&self) -> &[BranchState] {
        &self.branch_states
    }

    /// State of the branch at heap index `h`.
    pub fn branch_state(&self, h: usize) -> BranchState {
        self.branch_states[h]
    }

    /// The heap indices of the real decisions (the prototype rows in use), in order.
    pub fn decision_rows(&self) -> Vec<usize> {
        (0..self.num_branches())
            .filter(|h| self.branch_states[*h] == BranchState::Decision)
            .collect()
    }

    /// Number of real decisions (prototypes in use).
    pub fn num_decisions(&self) -> usize {
        self.branch_states
            .iter()
            .filter(|s| **s == BranchState::Decision)
            .count()
    }

    /// Whether each heap node (branches then leaves, `2^(d+1) − 1` entries) can be reached.
    pub fn reachable_heap(&self) -> Vec<bool> {
        let n = 2 * self.num_leaves() - 1;
        let mut reach = vec![false; n];
        reach[0] = true;
        for h in 0..self.num_branches() {
            if !reach[h] {
                continue;
            }
            let (l, r) = (2 * h + 1, 2 * h + 2);
            match self.branch_states[h] {
                BranchState::Decision => {
                    reach[l] = true;
                    reach[r] = true;
                }
                BranchState::PassLeft => reach[l] = true,
                BranchState::PassRight => reach[r] = true,
                BranchState::Removed => {}
            }
        }
        reach
    }

    /// Whether each leaf (left to right) can be reached.
    pub fn live_leaves(&self) -> Vec<bool> {
        let reach = self.reachable_heap();
        reach[self.num_branches()..].to_vec()
    }

    /// Number of reachable leaves.
    pub fn num_live_leaves(&self) -> usize {
        self.live_leaves().iter().filter(|x| **x).count()
    }

    /// The parent of heap node `h` and the direction from it towards `h` (`None` for
    /// the root).
    pub fn parent(h: usize) -> Option<(usize, Direction)> {
        if h == 0 {
            return None;
        }
        let dir = if h % 2 == 1 {
            Direction::Left
        } else {
            Direction::Right
        };
        Some(((h - 1) / 2, dir))
    }

    /// Heap index of leaf `j`.
    pub fn leaf_heap(&self, j: usize) -> usize {
        self.num_branches() + j
    }

    /// The reference's pre-order id of heap node `h`.
    pub fn node_id(&self, h: usize) -> NodeId {
        // Pre-order index: walk from the root; going left adds 1, going right adds
        // 1 + size(left subtree).
        let level = usize::BITS as usize - 1 - (h + 1).leading_zeros() as usize;
        let mut id = 0usize;
        for l in 0..level {
            let bit = ((h + 1) >> (level - 1 - l)) & 1;
            let subtree_depth = self.depth - l - 1; // depth of the child subtree
            let child_size = (1usize << (subtree_depth + 1)) - 1;
            id += if bit == 0 { 1 } else { 1 + child_size };
        }
        NodeId(id as u32)
    }

    /// The heap index of a pre-order node id, if it exists.
    pub fn heap_of(&self, id: NodeId) -> Option<usize> {
        let mut target = id.0 as usize;
        let mut h = 0usize;
        let mut level = 0usize;
        loop {
            if target == 0 {
                return Some(h);
            }
            if level >= self.depth {
                return None;
            }
            let child_size = (1usize << (self.depth - level)) - 1;
            if target <= child_size {
                target -= 1;
                h = 2 * h + 1;
            } else {
                target -= 1 + child_size;
                if target >= child_size {
                    return None;
                }
                h = 2 * h + 2;
            }
            level += 1;
        }
    }

    /// The effective root-to-node path of heap node `h` in the pruned tree: the
    /// directions of the real decisions only (pass-through branches are skipped).
    /// This is the `l`/`r` path the reference uses in its state_dict keys.
    pub fn effective_path(&self, h: usize) -> Vec<Direction> {
        let mut dirs = Vec::new();
        let mut ancestors = Vec::new();
        let mut x = h;
        while let Some((parent, dir)) = Self::parent(x) {
            ancestors.push((parent, dir));
            x = parent;
        }
        for (parent, dir) in ancestors.into_iter().rev() {
            if self.branch_states[parent] == BranchState::Decision {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// Marks the branch at heap index `h` as pruned, keeping the child in `keep`
    /// and removing the other child's subtree.
    pub(crate) fn prune_branch(&mut self, h: usize, keep: Direction) {
        self.branch_states[h] = match keep {
            Direction::Left => BranchState::PassLeft,
            Direction::Right => BranchState::PassRight,
        };
        let removed = match keep {
            Direction::Left => 2 * h + 2,
            Direction::Right => 2 * h + 1,
        };
        let mut stack = vec![removed];
        while let Some(x) = stack.pop() {
            if x < self.branch_states.len() {
                self.branch_states[x] = BranchState::Removed;
                stack.push(2 * x + 1);
                stack.push(2 * x + 2);
            }
        }
    }
}

/// Pruning support for other crates: replaces the branch at heap index `h` by its `keep`
/// child (removing the other subtree), as the reference's pruning does.
pub fn prune_branch(topology: &mut Topology, h: usize, keep: Direction) {
    topology.prune_branch(h, keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preorder_ids_match_the_reference_numbering() {
        let t = Topology::complete(2).unwrap();
        // heap: 0 root, 1 L, 2 R, 3 LL, 4 LR, 5 RL, 6 RR
        // pre-order: root 0, L 1, LL 2, LR 3, R 4, RL 5, RR 6
        let ids: Vec<u32> = (0..7).map(|h| t.node_id(h).0).collect();
        assert_eq!(ids, vec![0, 1, 4, 2, 3, 5, 6]);
        for h in 0..7 {
            assert_eq!(t.heap_of(t.node_id(h)), Some(h));
        }
        assert_eq!(t.heap_of(NodeId(7)), None);
        let t9 = Topology::complete(9).unwrap();
        let mut seen = vec![false; 1023];
        for h in 0..1023 {
            let id = t9.node_id(h).0 as usize;
            assert!(!seen[id]);
            seen[id] = true;
            assert_eq!(t9.heap_of(NodeId(id as u32)), Some(h));
        }
    }

    #[test]
    fn pruning_marks_subtrees_and_paths_skip_pass_throughs() {
        let mut t = Topology::complete(3).unwrap();
        // Prune heap node 1 (left child of root), keeping its right child (heap 4).
        t.prune_branch(1, Direction::Right);
        assert_eq!(t.branch_state(1), BranchState::PassRight);
        assert_eq!(t.branch_state(3), BranchState::Removed);
        assert_eq!(t.num_decisions(), 5);
        let live = t.live_leaves();
        assert_eq!(live, vec![false, false, true, true, true, true, true, true]);
        // Leaf 2 (heap 9) = root-L-R-L; effective path skips heap 1: L, L.
        assert_eq!(t.effective_path(9), vec![Direction::Left, Direction::Left]);
        let again = Topology::from_states(3, t.branch_states().to_vec()).unwrap();
        assert_eq!(again, t);
        let mut bad = t.branch_states().to_vec();
        bad[3] = BranchState::Decision;
        assert!(Topology::from_states(3, bad).is_err());
    }

    #[test]
    fn depth_is_checked() {
        assert!(Topology::complete(0).is_err());
        assert!(Topology::complete(MAX_DEPTH + 1).is_err());
    }
}
