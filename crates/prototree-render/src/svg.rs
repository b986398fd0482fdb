//! Self-contained SVG of a [`DecisionTree`] with a pure-Rust layered layout (no Graphviz):
//! leaves are spaced evenly in left-to-right order, each decision node is centred over its
//! children, one row per depth. Decision nodes show their prototype's patch image
//! (embedded as a base64 PNG) and leaves their top three classes with probability bars.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use base64::Engine as _;
use petgraph::graph::NodeIndex;
use prototree_tree::topology::NodeId;

use prototree_interpret::decision_tree::{DecisionTree, Edge, TreeNode};

const LEAF_W: f64 = 132.0;
const LEAF_H: f64 = 58.0;
const GAP: f64 = 10.0;
const PATCH: f64 = 64.0;
const ROW_H: f64 = 118.0;
const MARGIN: f64 = 20.0;

/// A borrowed SVG view of a decision tree; `Display` prints the document.
#[derive(Debug, Clone)]
pub struct SvgExport<'a> {
    tree: &'a DecisionTree,
    patches: Option<&'a HashMap<NodeId, Vec<u8>>>,
    title: Option<String>,
    node_links: bool,
}

/// XML-escapes text.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A `data:` URI for PNG bytes.
pub fn png_data_uri(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

impl<'a> SvgExport<'a> {
    /// An SVG view of `tree`.
    pub fn new(tree: &'a DecisionTree) -> Self {
        Self {
            tree,
            patches: None,
            title: None,
            node_links: false,
        }
    }

    /// Makes each decision node a link to `#node-N` (the report's gallery card of node N),
    /// with class `tree-node` and `data-node="N"`.
    pub fn with_node_links(mut self) -> Self {
        self.node_links = true;
        self
    }

    /// Patch images (PNG bytes) per decision node; nodes without one get a placeholder.
    pub fn with_patches(mut self, patches: &'a HashMap<NodeId, Vec<u8>>) -> Self {
        self.patches = Some(patches);
        self
    }

    /// A title line above the tree.
    pub fn with_title(mut self, title: &str) -> Self {
        self.title = Some(title.to_string());
        self
    }

    /// Positions (centre x, depth) of every node.
    fn layout(&self) -> (HashMap<NodeIndex, (f64, usize)>, usize, usize) {
        let mut pos = HashMap::new();
        let mut next_leaf = 0usize;
        let mut max_depth = 0usize;
        // Iterative post-order: children are placed before their parent.
        let mut stack = vec![(self.tree.root(), 0usize, false)];
        while let Some((i, depth, expanded)) = stack.pop() {
            max_depth = max_depth.max(depth);
            match self.tree.children(i) {
                None => {
                    let x = MARGIN + LEAF_W / 2.0 + next_leaf as f64 * (LEAF_W + GAP);
                    next_leaf += 1;
                    pos.insert(i, (x, depth));
                }
                Some((a, p)) if expanded => {
                    let xa = pos.get(&a).map(|v| v.0).unwrap_or(0.0);
                    let xp = pos.get(&p).map(|v| v.0).unwrap_or(0.0);
                    pos.insert(i, ((xa + xp) / 2.0, depth));
                }
                Some((a, p)) => {
                    stack.push((i, depth, true));
                    stack.push((p, depth + 1, false));
                    stack.push((a, depth + 1, false));
                }
            }
        }
        (pos, next_leaf, max_depth)
    }
}

/// Where nodes go: centre x and depth per node, and the y of a depth's row.
struct Placement {
    pos: HashMap<NodeIndex, (f64, usize)>,
    top: f64,
}

impl Placement {
    /// Top of the row at depth `d`.
    fn y_of(&self, d: usize) -> f64 {
        self.top + d as f64 * ROW_H
    }
}

impl SvgExport<'_> {
    /// The document header, background and title.
    fn write_header(&self, s: &mut String, width: f64, height: f64) {
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        if let Some(t) = &self.title {
            let _ = writeln!(
                s,
                r#"<text x="{MARGIN}" y="{}" font-size="16" font-weight="bold">{}</text>"#,
                MARGIN + 12.0,
                escape(t)
            );
        }
    }

    /// Every edge, labelled present / absent (drawn first, under the nodes).
    fn write_edges(&self, s: &mut String, at: &Placement) {
        let g = self.tree.graph();
        for e in g.edge_indices() {
            let (Some((a, b)), Some(w)) = (g.edge_endpoints(e), g.edge_weight(e)) else {
                continue;
            };
            let (Some(&(xa, da)), Some(&(xb, db))) = (at.pos.get(&a), at.pos.get(&b)) else {
                continue;
            };
            let (y1, y2) = (at.y_of(da) + PATCH + 16.0, at.y_of(db));
            let present = matches!(w, Edge::Present);
            let (colour, label) = if present {
                ("#2e7d32", "present")
            } else {
                ("#9e9e9e", "absent")
            };
            let _ = writeln!(
                s,
                r#"<line x1="{xa:.1}" y1="{y1:.1}" x2="{xb:.1}" y2="{y2:.1}" stroke="{colour}" stroke-width="{}"/>"#,
                if present { 2.0 } else { 1.5 }
            );
            let (mx, my) = ((xa + xb) / 2.0, (y1 + y2) / 2.0);
            let _ = writeln!(
                s,
                r#"<text x="{mx:.1}" y="{my:.1}" font-size="10" fill="{colour}" text-anchor="middle" paint-order="stroke" stroke="white" stroke-width="3">{label}</text>"#
            );
        }
    }

    /// A decision node centred at `x`, row top `y`: its patch (or a placeholder), frame
    /// and caption.
    fn write_decision(
        &self,
        s: &mut String,
        (x, y): (f64, f64),
        node: NodeId,
        distance: Option<f32>,
    ) {
        let (x0, y0) = (x - PATCH / 2.0, y);
        if self.node_links {
            let _ = writeln!(
                s,
                r##"<a href="#node-{0}" class="tree-node" data-node="{0}"><title>node {0}: show its gallery</title>"##,
                node.0
            );
        }
        match self.patches.and_then(|p| p.get(&node)) {
            Some(png) => {
                let _ = writeln!(
                    s,
                    r#"<image x="{x0:.1}" y="{y0:.1}" width="{PATCH}" height="{PATCH}" href="{}" style="image-rendering:pixelated"/>"#,
                    png_data_uri(png)
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    r##"<rect x="{x0:.1}" y="{y0:.1}" width="{PATCH}" height="{PATCH}" fill="#eceff1"/>"##
                );
            }
        }
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{y0:.1}" width="{PATCH}" height="{PATCH}" fill="none" stroke="#37474f" stroke-width="1.5"/>"##
        );
        let caption = match distance {
            Some(d) => format!("node {} · d {:.2}", node.0, d),
            None => format!("node {}", node.0),
        };
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#37474f">{}</text>"##,
            y + PATCH + 12.0,
            escape(&caption)
        );
        if self.node_links {
            s.push_str("</a>\n");
        }
    }

    /// A leaf centred at `x`, row top `y`: its top three classes with probability bars.
    fn write_leaf(&self, s: &mut String, (x, y): (f64, f64), distribution: &[f32]) {
        let names = self.tree.class_names();
        let (x0, y0) = (x - LEAF_W / 2.0, y);
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{y0:.1}" width="{LEAF_W}" height="{LEAF_H}" rx="6" fill="#fffde7" stroke="#f9a825"/>"##
        );
        let mut order: Vec<usize> = (0..distribution.len()).collect();
        order.sort_by(|a, b| distribution[*b].total_cmp(&distribution[*a]));
        for (r, &c) in order.iter().take(3).enumerate() {
            let p = distribution[c];
            let ty = y0 + 15.0 + r as f64 * 15.0;
            let bar = (LEAF_W - 12.0) * f64::from(p.clamp(0.0, 1.0));
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{bar:.1}" height="12" fill="{}"/>"##,
                x0 + 6.0,
                ty - 10.0,
                if r == 0 { "#ffcc80" } else { "#eeeeee" }
            );
            let name = names
                .get(c)
                .map(|n| n.replace('_', " "))
                .unwrap_or_default();
            let short: String = name.chars().take(18).collect();
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{ty:.1}" font-size="{}" font-weight="{}">{} {:.0}%</text>"#,
                x0 + 8.0,
                if r == 0 { 10 } else { 9 },
                if r == 0 { "bold" } else { "normal" },
                escape(&short),
                100.0 * p
            );
        }
    }
}

impl fmt::Display for SvgExport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pos, leaves, depth) = self.layout();
        let title_h = if self.title.is_some() { 30.0 } else { 0.0 };
        let width = 2.0 * MARGIN + leaves.max(1) as f64 * (LEAF_W + GAP);
        let height = 2.0 * MARGIN + title_h + depth as f64 * ROW_H + LEAF_H + 10.0;
        let at = Placement {
            pos,
            top: MARGIN + title_h,
        };
        let mut s = String::new();
        self.write_header(&mut s, width, height);
        self.write_edges(&mut s, &at);
        for (i, node) in self.tree.iter_nodes() {
            let Some(&(x, d)) = at.pos.get(&i) else {
                continue;
            };
            let y = at.y_of(d);
            match node {
                TreeNode::Decision {
                    node, projection, ..
                } => self.write_decision(
                    &mut s,
                    (x, y),
                    *node,
                    projection.as_ref().map(|p| p.distance),
                ),
                TreeNode::Leaf { distribution, .. } => {
                    self.write_leaf(&mut s, (x, y), distribution)
                }
            }
        }
        s.push_str("</svg>\n");
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_every_node_and_embedded_patches() -> anyhow::Result<()> {
        let t = prototree_tree::testing::small_cnn_tree_with_random_leaves(2, 4, 3, 0)?;
        let names = vec!["a<b".to_string(), "b".into(), "c".into()];
        let tree = DecisionTree::from_model(&t, &[], &names)?;
        let mut patches = HashMap::new();
        patches.insert(NodeId(0), vec![1u8, 2, 3]);
        let svg = SvgExport::new(&tree)
            .with_patches(&patches)
            .with_title("t")
            .to_string();
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<image").count(), 1);
        assert_eq!(svg.matches(r#"rx="6""#).count(), 4); // leaves
        assert!(svg.contains("a&lt;b") || !svg.contains("a<b"));
        assert!(svg.contains("data:image/png;base64,AQID"));
        assert!(!svg.contains("<a "), "links only when asked for");
        let linked = SvgExport::new(&tree).with_node_links().to_string();
        // Depth 2: three decision nodes, each a link to its gallery card.
        assert_eq!(linked.matches("<a href=\"#node-").count(), 3);
        assert_eq!(linked.matches("</a>").count(), 3);
        assert!(linked.contains(r##"<a href="#node-0" class="tree-node" data-node="0">"##));
        Ok(())
    }
}
