//! The reference's tree, read from a pickled `ProtoTree` module (`tree.pkl` / `model.pth`).
//!
//! The reference builds nodes as modules: `Branch` (children in `_modules['l']` and
//! `_modules['r']`) and `Leaf` (parameter `_dist_params`), each with its pre-order number
//! in `_index`. Pruning re-links a grandparent to a grandchild, so the live tree is what
//! hangs under `_root`, while `_index` keeps the numbering of the complete tree. The map
//! from branches to prototype rows, `_out_map`, is a dict keyed by the `Branch` objects
//! themselves (created from a Python `set`, so its order is arbitrary); it exists only in
//! the pickles, never in `model_state.pth`.

use std::collections::BTreeMap;

use prototree_torch::pickle::{Graph, ObjId, Value};
use prototree_torch::TorchFile;

use crate::{Error, Result};

/// Deepest live tree accepted while walking (the complete tree is at most 16 deep).
const MAX_WALK_DEPTH: usize = 64;

/// One live node of the reference tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReferenceNode {
    /// The node's `_index` (pre-order number in the complete tree).
    pub index: u32,
    /// `l`/`r` path from the root in the live (possibly pruned) tree.
    pub path: String,
    /// Children `(left, right)` indices of a branch; `None` for a leaf.
    pub children: Option<(u32, u32)>,
}

impl ReferenceNode {
    /// The state_dict key of this node's leaf parameters (`_root.l.r._dist_params`).
    pub fn leaf_key(&self) -> String {
        let mut key = String::from("_root");
        for c in self.path.chars() {
            key.push('.');
            key.push(c);
        }
        key.push_str("._dist_params");
        key
    }
}

/// Everything the importer needs from the pickled `ProtoTree`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReferenceTree {
    /// Number of classes (`_num_classes`).
    pub num_classes: usize,
    /// Prototype count (`num_prototypes` = branches of the complete tree).
    pub num_prototypes: usize,
    /// Prototype shape `(W1, H1, D)` (`prototype_shape`).
    pub prototype_shape: (usize, usize, usize),
    /// The `--log_probabilities` flag.
    pub log_probabilities: bool,
    /// The `--kontschieder_normalization` flag (leaf distributions `p / Σp`).
    pub kontschieder_normalization: bool,
    /// Live nodes in pre-order of the live tree.
    pub nodes: Vec<ReferenceNode>,
    /// `_out_map`: branch `_index` → prototype row, for every branch ever built (pruned
    /// ones included).
    pub out_map: BTreeMap<u32, u32>,
    /// Class of the backbone module, e.g. `features.resnet_features.ResNet_features`.
    pub backbone_class: Option<String>,
    /// Classes of the add-on layers in order, e.g. `[torch.nn.modules.conv.Conv2d,
    /// torch.nn.modules.activation.Sigmoid]`.
    pub add_on_classes: Vec<String>,
}

impl ReferenceTree {
    /// Reads the tree from the top-level `ProtoTree` object of a pickled module file.
    pub fn from_file(file: &TorchFile) -> Result<Self> {
        let g = file.graph();
        let root = file.root();
        let path = file.path();
        let bad = |reason: String| Error::BadTree {
            path: path.to_path_buf(),
            reason,
        };
        let class = class_name(g, root);
        let modules = g.attr(root, "_modules");
        let tree_root = modules.and_then(|m| g.dict_get(m, "_root"));
        let Some(tree_root) = tree_root else {
            return Err(Error::NotAProtoTree {
                path: path.to_path_buf(),
                found: class.unwrap_or_else(|| describe(g, root)),
            });
        };
        let int_attr = |name: &str| -> Result<usize> {
            g.attr(root, name)
                .and_then(|v| g.int(v))
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "ProtoTree attribute `{name}` is missing or not a count"
                    ))
                })
        };
        let bool_attr =
            |name: &str| -> bool { g.attr(root, name).and_then(|v| g.bool(v)).unwrap_or(false) };
        let num_classes = int_attr("_num_classes")?;
        let num_prototypes = int_attr("num_prototypes")?;
        let prototype_shape = prototype_shape_of(g, root)
            .ok_or_else(|| bad("ProtoTree attribute `prototype_shape` is missing".into()))?;

        let mut nodes = Vec::new();
        walk(g, tree_root, String::new(), 0, &mut nodes).map_err(bad)?;

        let out_map = out_map_of(g, root).map_err(bad)?;

        let backbone_class = modules
            .and_then(|m| g.dict_get(m, "_net"))
            .and_then(|n| class_name(g, n));
        let add_on_classes = modules
            .and_then(|m| g.dict_get(m, "_add_on"))
            .map(|a| add_on_classes_of(g, a))
            .unwrap_or_default();

        Ok(Self {
            num_classes,
            num_prototypes,
            prototype_shape,
            log_probabilities: bool_attr("_log_probabilities"),
            kontschieder_normalization: bool_attr("_kontschieder_normalization"),
            nodes,
            out_map,
            backbone_class,
            add_on_classes,
        })
    }

    /// The live leaves.
    pub fn leaves(&self) -> impl Iterator<Item = &ReferenceNode> {
        self.nodes.iter().filter(|n| n.children.is_none())
    }

    /// The live branches.
    pub fn branches(&self) -> impl Iterator<Item = &ReferenceNode> {
        self.nodes.iter().filter(|n| n.children.is_some())
    }
}

/// `prototype_shape` `(w, h, D)` of the `ProtoTree` at `root`.
fn prototype_shape_of(g: &Graph, root: ObjId) -> Option<(usize, usize, usize)> {
    let shape: Vec<usize> = g
        .seq(g.attr(root, "prototype_shape")?)?
        .iter()
        .map(|x| g.int(*x).and_then(|i| usize::try_from(i).ok()))
        .collect::<Option<_>>()?;
    match shape.as_slice() {
        [w, h, d] => Some((*w, *h, *d)),
        _ => None,
    }
}

/// `_out_map` of the `ProtoTree` at `root`: branch `_index` → prototype row.
fn out_map_of(g: &Graph, root: ObjId) -> std::result::Result<BTreeMap<u32, u32>, String> {
    let out_map_id = g
        .attr(root, "_out_map")
        .ok_or("ProtoTree attribute `_out_map` is missing")?;
    let entries = g.dict(out_map_id).ok_or("`_out_map` is not a dict")?;
    let mut out_map = BTreeMap::new();
    for (k, v) in entries {
        let index = node_index(g, *k).ok_or("an `_out_map` key is not a node with an `_index`")?;
        let row = g
            .int(*v)
            .and_then(|r| u32::try_from(r).ok())
            .ok_or_else(|| format!("`_out_map` row of node {index} is not a count"))?;
        if out_map.insert(index, row).is_some() {
            return Err(format!("node {index} appears twice in `_out_map`"));
        }
    }
    Ok(out_map)
}

/// Classes of the add-on module `a`: of its layers when it is a `Sequential`, else its own.
fn add_on_classes_of(g: &Graph, a: ObjId) -> Vec<String> {
    let inner = g.attr(a, "_modules").and_then(|m| g.dict(m));
    match inner {
        Some(items) if !items.is_empty() => items
            .iter()
            .map(|(_, v)| class_name(g, *v).unwrap_or_else(|| describe(g, *v)))
            .collect(),
        _ => vec![class_name(g, a).unwrap_or_else(|| describe(g, a))],
    }
}

fn class_name(g: &Graph, id: ObjId) -> Option<String> {
    g.class_of(id).map(|(m, n)| format!("{m}.{n}"))
}

fn describe(g: &Graph, id: ObjId) -> String {
    match g.get(id) {
        Some(Value::Dict(_)) => {
            "a dict (a state_dict? use the directory's tree.pkl or model.pth)".into()
        }
        Some(Value::Instance(i)) => match g.global(i.callable) {
            Some((m, n)) => format!("{m}.{n}"),
            None => "an object".into(),
        },
        Some(other) => format!("{other:?}").chars().take(60).collect(),
        None => "nothing".into(),
    }
}

fn node_index(g: &Graph, id: ObjId) -> Option<u32> {
    g.attr(id, "_index")
        .and_then(|v| g.int(v))
        .and_then(|i| u32::try_from(i).ok())
}

fn walk(
    g: &Graph,
    id: ObjId,
    path: String,
    depth: usize,
    out: &mut Vec<ReferenceNode>,
) -> std::result::Result<u32, String> {
    if depth > MAX_WALK_DEPTH {
        return Err("the tree is nested too deeply (cyclic?)".into());
    }
    let index = node_index(g, id).ok_or_else(|| {
        format!(
            "node at `_root{}` has no `_index` ({})",
            dotted(&path),
            describe(g, id)
        )
    })?;
    let modules = g.attr(id, "_modules");
    let l = modules.and_then(|m| g.dict_get(m, "l"));
    let r = modules.and_then(|m| g.dict_get(m, "r"));
    match (l, r) {
        (Some(l), Some(r)) => {
            let at = out.len();
            out.push(ReferenceNode {
                index,
                path: path.clone(),
                children: None,
            });
            let li = walk(g, l, format!("{path}l"), depth + 1, out)?;
            let ri = walk(g, r, format!("{path}r"), depth + 1, out)?;
            out[at].children = Some((li, ri));
        }
        (None, None) => {
            let has_params = g
                .attr(id, "_parameters")
                .and_then(|p| g.dict_get(p, "_dist_params"))
                .is_some();
            if !has_params {
                return Err(format!(
                    "node {index} at `_root{}` is neither a branch (l, r) nor a leaf (_dist_params)",
                    dotted(&path)
                ));
            }
            out.push(ReferenceNode {
                index,
                path,
                children: None,
            });
        }
        _ => {
            return Err(format!(
                "branch {index} at `_root{}` has only one child",
                dotted(&path)
            ))
        }
    }
    Ok(index)
}

fn dotted(path: &str) -> String {
    path.chars().map(|c| format!(".{c}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_keys_use_dotted_paths() {
        let n = ReferenceNode {
            index: 3,
            path: "lr".into(),
            children: None,
        };
        assert_eq!(n.leaf_key(), "_root.l.r._dist_params");
        let root_leaf = ReferenceNode {
            index: 0,
            path: String::new(),
            children: None,
        };
        assert_eq!(root_leaf.leaf_key(), "_root._dist_params");
    }
}
