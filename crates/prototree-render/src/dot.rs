//! Graphviz DOT export of a [`DecisionTree`], in the reference's style (spec §6.1): edges
//! labelled "Absent" / "Present", leaves labelled with their top class. Built as a
//! `graphviz-rust` graph and printed by its printer.
//!
//! ```
//! # use prototree_interpret::DecisionTree;
//! # use prototree_render::DotExport;
//! # fn show(tree: &DecisionTree) -> String {
//! let dot = DotExport::new(tree).rank_dir("TB").to_string();
//! # dot }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use graphviz_rust::dot_structures::{
    Attribute, Edge as DotEdge, EdgeTy, Graph, GraphAttributes, Id, Node, NodeId as DotNodeId,
    Stmt, Vertex,
};
use graphviz_rust::printer::PrinterContext;

use prototree_interpret::decision_tree::{DecisionTree, Edge, TreeNode};

/// A borrowed DOT view of a decision tree; `Display` prints it.
#[derive(Debug, Clone)]
pub struct DotExport<'a> {
    tree: &'a DecisionTree,
    rank_dir: Option<String>,
    patch_images: Option<PathBuf>,
}

fn quoted(s: &str) -> Id {
    Id::Escaped(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

fn attr(k: &str, v: &str) -> Attribute {
    Attribute(Id::Plain(k.into()), quoted(v))
}

fn node_name(n: &TreeNode) -> DotNodeId {
    DotNodeId(Id::Plain(format!("n{}", n.id().0)), None)
}

impl<'a> DotExport<'a> {
    /// A DOT view of `tree` with default options.
    pub fn new(tree: &'a DecisionTree) -> Self {
        Self {
            tree,
            rank_dir: None,
            patch_images: None,
        }
    }

    /// Graphviz `rankdir` (`TB`, `LR`, ...).
    pub fn rank_dir(mut self, dir: &str) -> Self {
        self.rank_dir = Some(dir.to_string());
        self
    }

    /// Shows decision nodes as the images `dir/node_{id}.png` (written by the caller).
    pub fn with_patch_images(mut self, dir: &Path) -> Self {
        self.patch_images = Some(dir.to_path_buf());
        self
    }

    /// The graph as a `graphviz-rust` structure.
    pub fn to_graph(&self) -> Graph {
        let mut stmts: Vec<Stmt> = Vec::new();
        let mut g = vec![attr("margin", "0"), attr("nodesep", "0.1")];
        if let Some(r) = &self.rank_dir {
            g.push(attr("rankdir", r));
        }
        stmts.push(GraphAttributes::Graph(g).into());
        stmts.push(
            GraphAttributes::Node(vec![attr("fontname", "Helvetica"), attr("fontsize", "10")])
                .into(),
        );
        let names = self.tree.class_names();
        for (_, n) in self.tree.iter_nodes() {
            let attrs = match n {
                TreeNode::Decision {
                    node, projection, ..
                } => {
                    let mut a = vec![attr("shape", "rect"), attr("xlabel", &node.0.to_string())];
                    match (&self.patch_images, projection) {
                        (Some(dir), Some(_)) => {
                            let img = dir.join(format!("node_{}.png", node.0));
                            a.push(attr("image", &img.display().to_string()));
                            a.push(attr("label", ""));
                        }
                        _ => a.push(attr("label", &format!("prototype {}", node.0))),
                    }
                    a
                }
                TreeNode::Leaf {
                    top_class,
                    distribution,
                    ..
                } => {
                    let name = names
                        .get(*top_class)
                        .map(|s| s.replace('_', " "))
                        .unwrap_or_default();
                    let p = distribution.get(*top_class).copied().unwrap_or(0.0);
                    vec![
                        attr("shape", "box"),
                        attr("style", "rounded"),
                        attr("label", &format!("{name}\n{:.0}%", 100.0 * p)),
                    ]
                }
            };
            stmts.push(Node::new(node_name(n), attrs).into());
        }
        for e in self.tree.graph().edge_indices() {
            let (Some((a, b)), Some(w)) = (
                self.tree.graph().edge_endpoints(e),
                self.tree.graph().edge_weight(e),
            ) else {
                continue;
            };
            let (na, nb) = (&self.tree.graph()[a], &self.tree.graph()[b]);
            let label = match w {
                Edge::Absent => "Absent",
                Edge::Present => "Present",
            };
            stmts.push(
                DotEdge {
                    ty: EdgeTy::Pair(Vertex::N(node_name(na)), Vertex::N(node_name(nb))),
                    attributes: vec![attr("label", label), attr("fontsize", "9")],
                }
                .into(),
            );
        }
        Graph::DiGraph {
            id: Id::Plain("ProtoTree".into()),
            strict: false,
            stmts,
        }
    }
}

impl fmt::Display for DotExport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = graphviz_rust::print(self.to_graph(), &mut PrinterContext::default());
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prototree_tree::topology::{prune_branch, Direction, Topology};

    #[test]
    fn dot_parses_back_with_graphviz_rust() -> anyhow::Result<()> {
        let mut t = prototree_tree::testing::small_cnn_tree_with_random_leaves(3, 4, 3, 0)?;
        let mut topo = Topology::complete(3)?;
        prune_branch(&mut topo, 2, Direction::Left);
        t.set_topology(topo)?;
        let names = vec![
            "Red_bird".to_string(),
            "Blue \"quoted\" bird".into(),
            "c".into(),
        ];
        let tree = DecisionTree::from_model(&t, &[], &names)?;
        let dot = DotExport::new(&tree).rank_dir("TB").to_string();
        assert!(dot.contains("Absent") && dot.contains("Present"));
        let parsed = graphviz_rust::parse(&dot).map_err(anyhow::Error::msg)?;
        let Graph::DiGraph { stmts, .. } = parsed else {
            panic!("not a digraph");
        };
        let nodes = stmts.iter().filter(|s| matches!(s, Stmt::Node(_))).count();
        let edges = stmts.iter().filter(|s| matches!(s, Stmt::Edge(_))).count();
        assert_eq!(nodes, tree.graph().node_count());
        assert_eq!(edges, tree.graph().edge_count());
        Ok(())
    }
}
