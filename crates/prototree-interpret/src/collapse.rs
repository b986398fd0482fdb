//! Collapsing decisions that decide nothing on the training data: a decision node every
//! training image's greedy path answers the same way ("present" for all of them, or
//! "absent" for all) routes no image to its other subtree, so its question tells the
//! explanation nothing.
//!
//! Such a node is replaced by the child the images take (as pruning replaces a parent by a
//! child, spec §3); its prototype and the unused subtree leave the tree. Greedy paths of the
//! training images keep every other decision and reach the same leaves, so their greedy
//! predictions do not change; soft and max-leaf predictions may move slightly because the
//! removed leaves leave the mixture, and a test image may have taken the unused side. The
//! root is never replaced.

use prototree_tree::inference::greedy_path;
use prototree_tree::topology::{prune_branch, BranchState, Direction, NodeId, Topology};
use prototree_tree::{BatchSource, ProtoTree};

use crate::Result;

/// How many of the images reaching each heap node go left ("absent") and right
/// ("present") on their greedy paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visits {
    /// Per heap node, the images answering "absent".
    pub left: Vec<usize>,
    /// Per heap node, the images answering "present".
    pub right: Vec<usize>,
}

impl Visits {
    /// No visits yet for a tree of `topo`'s shape.
    pub fn new(topo: &Topology) -> Self {
        let n = topo.num_branches();
        Self {
            left: vec![0; n],
            right: vec![0; n],
        }
    }

    /// Adds the greedy path of one image, given its effective routing row (heap order).
    pub fn add_path(&mut self, topo: &Topology, routing_row: &[f32]) {
        let (_, steps) = greedy_path(topo, routing_row);
        for s in steps {
            let side = if s.present {
                &mut self.right
            } else {
                &mut self.left
            };
            if let Some(v) = side.get_mut(s.heap) {
                *v += 1;
            }
        }
    }
}

/// The greedy-path visits of every image of `source` (eval mode); `progress(done, total)`
/// counts batches.
pub fn count_visits(
    model: &ProtoTree,
    source: &mut dyn BatchSource,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Visits> {
    let topo = model.topology();
    let mut visits = Visits::new(topo);
    let total = source.num_batches();
    for (i, batch) in source.batches(0).enumerate() {
        let batch = batch?;
        let routing = model
            .forward(&batch.images, false)?
            .routing
            .to_vec2::<f32>()?;
        for row in &routing {
            visits.add_path(topo, row);
        }
        progress(i + 1, total);
    }
    Ok(visits)
}

/// Replaces, top down, every non-root decision of `topo` that images reach but all send
/// the same way by the child they take; returns the replaced nodes in the order they went.
pub fn collapse_in_topology(topo: &mut Topology, visits: &Visits) -> Vec<NodeId> {
    let mut collapsed = Vec::new();
    // Heap order visits a parent before its children, so a node under a collapsed one's
    // unused side is already marked removed when its turn comes; a node no image reaches
    // has no visits and stays as it is.
    for h in 1..topo.num_branches() {
        if topo.branch_state(h) != BranchState::Decision {
            continue;
        }
        let (l, r) = (
            visits.left.get(h).copied().unwrap_or(0),
            visits.right.get(h).copied().unwrap_or(0),
        );
        let keep = match (l, r) {
            (0, 0) => continue,
            (0, _) => Direction::Right,
            (_, 0) => Direction::Left,
            _ => continue,
        };
        collapsed.push(topo.node_id(h));
        prune_branch(topo, h, keep);
    }
    collapsed
}

/// [`collapse_in_topology`] on `model`'s tree with the visits of `source`'s images
/// ([`count_visits`]).
pub fn collapse_constant_decisions(
    model: &mut ProtoTree,
    source: &mut dyn BatchSource,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<NodeId>> {
    let visits = count_visits(model, source, progress)?;
    let mut topo = model.topology().clone();
    let collapsed = collapse_in_topology(&mut topo, &visits);
    if !collapsed.is_empty() {
        model.set_topology(topo)?;
    }
    Ok(collapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A routing row (heap order, 7 nodes of a depth-3 tree) sending an image along the
    /// given directions from the root (true: present).
    fn route(topo: &Topology, dirs: &[bool]) -> Vec<f32> {
        let mut row = vec![0.1f32; topo.num_branches()];
        let mut h = 0;
        for &right in dirs {
            row[h] = if right { 0.9 } else { 0.1 };
            h = if right { 2 * h + 2 } else { 2 * h + 1 };
        }
        row
    }

    #[test]
    fn a_decision_every_image_answers_alike_goes() -> anyhow::Result<()> {
        // Depth 3: heap 0 root; 1, 2; 3..6. Every image reaching node 1 goes right (to 4);
        // node 2 splits its images; node 5 sends all left.
        let mut topo = Topology::complete(3)?;
        let mut visits = Visits::new(&topo);
        for dirs in [
            [false, true, false],
            [false, true, true],
            [true, false, false],
            [true, true, false],
        ] {
            visits.add_path(&topo, &route(&topo, &dirs));
        }
        assert_eq!((visits.left[1], visits.right[1]), (0, 2));
        assert_eq!((visits.left[2], visits.right[2]), (1, 1));
        let collapsed = collapse_in_topology(&mut topo, &visits);
        // Node 1 goes (its left subtree, heap 3, with it); node 4 splits its two images and
        // stays; node 5 (one image, absent) and node 6 (one image, absent) go.
        let ids: Vec<NodeId> = [1, 5, 6].iter().map(|&h| topo.node_id(h)).collect();
        assert_eq!(collapsed, ids);
        assert_eq!(topo.branch_state(1), BranchState::PassRight);
        assert_eq!(topo.branch_state(5), BranchState::PassLeft);
        assert_eq!(topo.branch_state(6), BranchState::PassLeft);
        assert_eq!(topo.branch_state(3), BranchState::Removed);
        // The root and the splitting nodes keep deciding.
        assert_eq!(topo.num_decisions(), 3);
        // Greedy paths reach the same leaves as before.
        let before = Topology::complete(3)?;
        for dirs in [
            [false, true, false],
            [true, false, false],
            [true, true, false],
        ] {
            let row = route(&before, &dirs);
            assert_eq!(greedy_path(&before, &row).0, greedy_path(&topo, &row).0);
        }
        Ok(())
    }

    #[test]
    fn no_visits_change_nothing_and_the_root_stays() -> anyhow::Result<()> {
        let mut topo = Topology::complete(2)?;
        let visits = Visits::new(&topo);
        assert!(collapse_in_topology(&mut topo, &visits).is_empty());
        // Every image goes right at the root: the root stays, its right child decides.
        let mut visits = Visits::new(&topo);
        visits.add_path(&topo, &[0.9, 0.1, 0.9]);
        visits.add_path(&topo, &[0.9, 0.1, 0.2]);
        assert!(collapse_in_topology(&mut topo, &visits).is_empty());
        assert_eq!(topo.num_decisions(), 3);
        Ok(())
    }
}
