//! The pruned, projected soft tree as a plain decision tree (a `petgraph` graph):
//! decision nodes hold a prototype and its source patch, edges say "absent" (left) or
//! "present" (right), leaves hold the class distribution. Pass-through branches left by
//! pruning are skipped, so the graph is exactly the pruned tree.

use prototree_tree::inference::argmax;
use std::collections::VecDeque;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction as GraphDirection;
use prototree_tree::io::ProjectionRecord;
use prototree_tree::topology::{BranchState, NodeId};
use prototree_tree::ProtoTree;
use serde::Serialize;

use crate::{Error, Result};

/// A node of the decision tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum TreeNode {
    /// "Does the image contain a patch like this prototype?"
    Decision {
        /// The node in the reference's numbering.
        node: NodeId,
        /// Prototype row (heap index).
        row: usize,
        /// Where the prototype was projected from, if it was.
        projection: Option<ProjectionRecord>,
    },
    /// A class distribution.
    Leaf {
        /// The node in the reference's numbering.
        node: NodeId,
        /// Leaf index (left to right in the complete tree).
        leaf: usize,
        /// Class probabilities.
        distribution: Vec<f32>,
        /// The most probable class.
        top_class: usize,
    },
}

impl TreeNode {
    /// The node id in the reference's numbering.
    pub fn id(&self) -> NodeId {
        match self {
            TreeNode::Decision { node, .. } | TreeNode::Leaf { node, .. } => *node,
        }
    }
    /// Whether this is a leaf.
    pub fn is_leaf(&self) -> bool {
        matches!(self, TreeNode::Leaf { .. })
    }
}

/// An edge label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Edge {
    /// The prototype is absent (similarity ≤ 0.5): left child.
    Absent,
    /// The prototype is present (similarity > 0.5): right child.
    Present,
}

/// A binarized prototype tree.
#[derive(Debug, Clone)]
pub struct DecisionTree {
    graph: DiGraph<TreeNode, Edge>,
    root: NodeIndex,
    class_names: Vec<String>,
}

impl DecisionTree {
    /// Binarizes `model`, attaching `projections` to their nodes.
    pub fn from_model(
        model: &ProtoTree,
        projections: &[ProjectionRecord],
        class_names: &[String],
    ) -> Result<Self> {
        if class_names.len() != model.num_classes() {
            return Err(Error::Invalid(format!(
                "{} class names for a model with {} classes",
                class_names.len(),
                model.num_classes()
            )));
        }
        let topo = model.topology();
        let dists = model.leaves().distributions()?.to_vec2::<f32>()?;
        let mut graph = DiGraph::new();
        // Iterative construction from the root, skipping pass-throughs.
        let effective = |mut h: usize| -> usize {
            while h < topo.num_branches() {
                match topo.branch_state(h) {
                    BranchState::PassLeft => h = 2 * h + 1,
                    BranchState::PassRight => h = 2 * h + 2,
                    _ => break,
                }
            }
            h
        };
        let make = |graph: &mut DiGraph<TreeNode, Edge>, h: usize| -> NodeIndex {
            if h >= topo.num_branches() {
                let leaf = h - topo.num_branches();
                let distribution = dists.get(leaf).cloned().unwrap_or_default();
                graph.add_node(TreeNode::Leaf {
                    node: topo.node_id(h),
                    leaf,
                    top_class: argmax(&distribution),
                    distribution,
                })
            } else {
                graph.add_node(TreeNode::Decision {
                    node: topo.node_id(h),
                    row: h,
                    projection: projections.iter().find(|r| r.row as usize == h).cloned(),
                })
            }
        };
        let root_heap = effective(0);
        let root = make(&mut graph, root_heap);
        let mut queue = VecDeque::from([(root_heap, root)]);
        while let Some((h, idx)) = queue.pop_front() {
            if h >= topo.num_branches() {
                continue;
            }
            for (child, edge) in [(2 * h + 1, Edge::Absent), (2 * h + 2, Edge::Present)] {
                let c = effective(child);
                let cidx = make(&mut graph, c);
                graph.add_edge(idx, cidx, edge);
                queue.push_back((c, cidx));
            }
        }
        Ok(Self {
            graph,
            root,
            class_names: class_names.to_vec(),
        })
    }

    /// The root.
    pub fn root(&self) -> NodeIndex {
        self.root
    }
    /// The underlying graph.
    pub fn graph(&self) -> &DiGraph<TreeNode, Edge> {
        &self.graph
    }
    /// A node.
    pub fn node(&self, idx: NodeIndex) -> Option<&TreeNode> {
        self.graph.node_weight(idx)
    }
    /// Class names.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }
    /// The (absent, present) children of a decision node.
    pub fn children(&self, idx: NodeIndex) -> Option<(NodeIndex, NodeIndex)> {
        let mut absent = None;
        let mut present = None;
        for e in self.graph.edges_directed(idx, GraphDirection::Outgoing) {
            match e.weight() {
                Edge::Absent => absent = Some(e.target()),
                Edge::Present => present = Some(e.target()),
            }
        }
        Some((absent?, present?))
    }
    /// Nodes in breadth-first order from the root.
    pub fn iter_nodes(&self) -> impl Iterator<Item = (NodeIndex, &TreeNode)> + '_ {
        let mut order = Vec::with_capacity(self.graph.node_count());
        let mut queue = VecDeque::from([self.root]);
        while let Some(i) = queue.pop_front() {
            order.push(i);
            if let Some((a, p)) = self.children(i) {
                queue.push_back(a);
                queue.push_back(p);
            }
        }
        order.into_iter().map(move |i| (i, &self.graph[i]))
    }
    /// Number of decisions on the longest root-to-leaf path.
    pub fn depth(&self) -> usize {
        fn go(t: &DecisionTree, i: NodeIndex) -> usize {
            match t.children(i) {
                Some((a, p)) => 1 + go(t, a).max(go(t, p)),
                None => 0,
            }
        }
        go(self, self.root)
    }
    /// Number of leaves.
    pub fn num_leaves(&self) -> usize {
        self.graph.node_weights().filter(|n| n.is_leaf()).count()
    }
    /// Number of decision nodes (prototypes).
    pub fn num_decisions(&self) -> usize {
        self.graph.node_count() - self.num_leaves()
    }
    /// The tree as nested JSON: decision nodes carry their prototype row, projection
    /// record and `absent` / `present` subtrees; leaves their distribution and top class.
    pub fn to_json(&self) -> serde_json::Value {
        fn go(t: &DecisionTree, i: NodeIndex) -> serde_json::Value {
            match (t.node(i), t.children(i)) {
                (
                    Some(TreeNode::Decision {
                        node,
                        row,
                        projection,
                    }),
                    Some((a, p)),
                ) => {
                    serde_json::json!({
                        "node": node.0,
                        "kind": "decision",
                        "prototype_row": row,
                        "projection": projection,
                        "absent": go(t, a),
                        "present": go(t, p),
                    })
                }
                (
                    Some(TreeNode::Leaf {
                        node,
                        leaf,
                        distribution,
                        top_class,
                    }),
                    _,
                ) => {
                    serde_json::json!({
                        "node": node.0,
                        "kind": "leaf",
                        "leaf": leaf,
                        "top_class": top_class,
                        "top_class_name": t.class_names.get(*top_class),
                        "distribution": distribution,
                    })
                }
                _ => serde_json::Value::Null,
            }
        }
        serde_json::json!({
            "class_names": self.class_names,
            "num_decisions": self.num_decisions(),
            "num_leaves": self.num_leaves(),
            "depth": self.depth(),
            "root": go(self, self.root),
        })
    }

    /// Follows one path: at each decision, "present" iff the similarity of its prototype
    /// (`similarity_by_row[row]`) is above 0.5. Returns the leaf and the decisions taken.
    pub fn predict(&self, similarity_by_row: &[f32]) -> Result<(NodeIndex, Vec<(NodeId, bool)>)> {
        let mut i = self.root;
        let mut path = Vec::new();
        while let Some(TreeNode::Decision { row, node, .. }) = self.node(i) {
            let s = *similarity_by_row
                .get(*row)
                .ok_or_else(|| Error::Invalid(format!("no similarity for prototype row {row}")))?;
            let present = s > 0.5;
            path.push((*node, present));
            let (a, p) = self
                .children(i)
                .ok_or_else(|| Error::Invalid("decision node without two children".into()))?;
            i = if present { p } else { a };
        }
        Ok((i, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use prototree_tree::inference::greedy_path;
    use prototree_tree::topology::{prune_branch, Direction, Topology};

    #[test]
    fn binarized_prediction_equals_greedy_on_a_pruned_tree() -> anyhow::Result<()> {
        let mut t = prototree_tree::testing::small_cnn_tree_with_random_leaves(4, 4, 3, 0)?;
        let mut topo = Topology::complete(4)?;
        prune_branch(&mut topo, 1, Direction::Right);
        prune_branch(&mut topo, 6, Direction::Left);
        t.set_topology(topo.clone())?;
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let tree = DecisionTree::from_model(&t, &[], &names)?;
        assert_eq!(tree.num_decisions(), topo.num_decisions());
        assert_eq!(tree.num_leaves(), topo.num_live_leaves());
        assert_eq!(tree.iter_nodes().count(), tree.graph().node_count());
        let sims = Tensor::rand(0f32, 1.0, (200, 15), &Device::Cpu)?.to_vec2::<f32>()?;
        for row in &sims {
            // Effective routing of the soft tree: similarities at decisions, 0/1 at pass-throughs.
            let routing: Vec<f32> = (0..15)
                .map(|h| match topo.branch_state(h) {
                    BranchState::PassRight => 1.0,
                    BranchState::PassLeft => 0.0,
                    _ => row[h],
                })
                .collect();
            let (leaf, steps) = greedy_path(&topo, &routing);
            let (idx, path) = tree.predict(row)?;
            match tree.node(idx) {
                Some(TreeNode::Leaf { leaf: l, .. }) => assert_eq!(*l, leaf),
                other => panic!("not a leaf: {other:?}"),
            }
            let want: Vec<(NodeId, bool)> = steps.iter().map(|s| (s.node, s.present)).collect();
            assert_eq!(path, want);
        }
        // The JSON form holds every node once.
        let json = tree.to_json();
        fn count(v: &serde_json::Value) -> (usize, usize) {
            match v["kind"].as_str() {
                Some("decision") => {
                    let (a, b) = (count(&v["absent"]), count(&v["present"]));
                    (1 + a.0 + b.0, a.1 + b.1)
                }
                Some("leaf") => (0, 1),
                _ => panic!("bad node {v}"),
            }
        }
        assert_eq!(
            count(&json["root"]),
            (tree.num_decisions(), tree.num_leaves())
        );
        assert_eq!(json["num_leaves"], tree.num_leaves());
        Ok(())
    }
}
