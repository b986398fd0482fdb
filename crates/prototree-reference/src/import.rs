//! Turning a reference checkpoint into our model.
//!
//! [`ReferenceCheckpoint::read`] reads a checkpoint directory; [`convert`] maps it onto a
//! [`ProtoTree`] in memory; [`load_reference`] does both; [`import_reference`] also writes
//! our model directory with [`prototree_tree::SavedModel::save`].

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use prototree_backbone::BackboneKind;
use prototree_torch::{FileFormat, TorchFile};
use prototree_tree::init::{ADD_ON_WEIGHT, PROTOTYPES};
use prototree_tree::io::{leaf_key, Preprocessing, FORMAT_VERSION};
use prototree_tree::ModelStage;
use prototree_tree::{
    BranchState, Leaves, ModelMeta, NodeId, ProtoTree, SavedModel, Topology, TreeConfig,
};
use serde::{Deserialize, Serialize};

use crate::backbone::detect_backbone;
use crate::tree::ReferenceTree;
use crate::{Error, Result};

/// The state dict the reference's `ProtoTree.save_state` writes.
pub const STATE_FILE: &str = "model_state.pth";
/// The whole module pickled by `ProtoTree.save_state` (`pickle.dump`, highest protocol).
pub const TREE_PICKLE: &str = "tree.pkl";
/// The whole module saved by `ProtoTree.save` (`torch.save`).
pub const MODULE_FILE: &str = "model.pth";

/// Input side of the reference's test transform (`Resize((224, 224))`).
pub const REFERENCE_IMAGE_SIZE: u32 = 224;
/// Normalisation of the reference's transforms (ImageNet mean), for every backbone.
pub const REFERENCE_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// Normalisation of the reference's transforms (ImageNet standard deviation).
pub const REFERENCE_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Smallest leaf probability represented when converting Kontschieder-normalised leaves
/// (`p / Σp`) to our softmax parameters (`ln p`); a zero probability becomes this one,
/// which is below f32 resolution after the softmax.
const MIN_LEAF_PROBABILITY: f32 = f32::MIN_POSITIVE;

/// Which files of a checkpoint directory were read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFiles {
    /// The pickled module the tree shape and `_out_map` came from (`tree.pkl` or `model.pth`).
    pub structure: PathBuf,
    /// Its layout.
    pub structure_format: FileFormat,
    /// The file the tensors came from (`model_state.pth`, or the pickled module).
    pub tensors: PathBuf,
    /// Its layout.
    pub tensors_format: FileFormat,
}

/// A reference checkpoint directory, read but not yet converted.
#[derive(Debug, Clone)]
pub struct ReferenceCheckpoint {
    /// Where everything came from.
    pub files: CheckpointFiles,
    /// The pickled tree.
    pub tree: ReferenceTree,
    /// All tensors under their state-dict names, on the CPU.
    pub tensors: HashMap<String, Tensor>,
    /// Tensors left out because candle has no type for them (names).
    pub skipped: Vec<String>,
}

impl ReferenceCheckpoint {
    /// Reads a checkpoint directory written by the reference (`checkpoints/<name>/`), or
    /// the directory of a file given inside it.
    ///
    /// The tree shape and `_out_map` come from `tree.pkl`, else `model.pth`; the tensors
    /// from `model_state.pth`, else from that pickled module. Both the zip archives of
    /// PyTorch ≥ 1.6 and the older `torch.save` stream are read.
    pub fn read(dir: &Path) -> Result<Self> {
        let dir = if dir.is_file() {
            dir.parent().unwrap_or(Path::new("."))
        } else {
            dir
        };
        let state = dir.join(STATE_FILE);
        let pickle = dir.join(TREE_PICKLE);
        let module = dir.join(MODULE_FILE);
        let structure_path = if pickle.is_file() {
            pickle
        } else if module.is_file() {
            module
        } else {
            return Err(Error::MissingFiles {
                dir: dir.to_path_buf(),
                expected: vec![
                    format!("{TREE_PICKLE} (with {STATE_FILE})"),
                    MODULE_FILE.to_string(),
                ],
            });
        };
        let structure = TorchFile::open(&structure_path)?;
        let tree = ReferenceTree::from_file(&structure)?;
        let (tensors, skipped, tensors_path, tensors_format) = if state.is_file() {
            let (t, s, format) = read_state_dict(&state)?;
            (t, s, state, format)
        } else {
            let entries = structure.module_entries(structure.root())?;
            let (t, s) = structure.tensors(&entries)?;
            (t, s, structure_path.clone(), structure.format())
        };
        Ok(Self {
            files: CheckpointFiles {
                structure: structure_path,
                structure_format: structure.format(),
                tensors: tensors_path,
                tensors_format,
            },
            tree,
            tensors,
            skipped,
        })
    }
}

/// Reads a state dict (either `torch.save` format): its tensors, the names of those
/// candle has no type for, and the file's layout.
fn read_state_dict(path: &Path) -> Result<(HashMap<String, Tensor>, Vec<String>, FileFormat)> {
    let file = TorchFile::open(path)?;
    let entries = file.state_dict_entries(file.root())?;
    let (t, s) = file.tensors(&entries)?;
    Ok((t, s, file.format()))
}

/// How the reference's leaves turned into ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeafMode {
    /// `softmax(_dist_params)`, as ours: copied.
    Softmax,
    /// `--kontschieder_normalization` (`p / Σp`): stored as `ln(p / Σp)`, whose softmax is
    /// the same distribution.
    KontschiederNormalization,
}

/// Options of an import.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportOptions {
    /// Class names, index = class id; `class_000`, `class_001`, … when `None`.
    pub class_names: Option<Vec<String>>,
    /// Input side in pixels; the reference's 224 when `None`.
    pub image_size: Option<u32>,
    /// Pipeline stage to record (`trained`, `pruned`, `projected`); when `None`:
    /// `projected` if the directory name contains `projected` (the reference's
    /// `pruned_and_projected`), else `pruned` if the tree was pruned, else `trained`.
    pub stage: Option<String>,
}

/// What an import found and did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    /// The files read.
    pub files: CheckpointFiles,
    /// The model directory written, if any.
    pub output: Option<PathBuf>,
    /// Our backbone.
    pub backbone: BackboneKind,
    /// The class of the reference's features module, when the pickle names one.
    pub backbone_class: Option<String>,
    /// Depth of the complete tree.
    pub depth: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Prototype length `D`.
    pub proto_dim: usize,
    /// Decisions (live branches) of the tree.
    pub num_decisions: usize,
    /// Live leaves of the tree.
    pub num_leaves: usize,
    /// Whether the reference had pruned the tree.
    pub pruned: bool,
    /// The recorded pipeline stage.
    pub stage: String,
    /// How the leaves were converted.
    pub leaf_mode: LeafMode,
    /// Whether the reference ran with `--log_probabilities` (the same model; only its
    /// outputs were log-probabilities).
    pub log_probabilities: bool,
    /// For each of our prototype rows (heap order), the reference's row (`_out_map`).
    pub prototype_rows: Vec<u32>,
    /// Checkpoint tensors not needed by our model (BatchNorm `num_batches_tracked`).
    pub ignored_tensors: Vec<String>,
}

/// A converted checkpoint: our model in memory, and the report.
#[derive(Debug)]
pub struct Imported {
    /// The model, its `config.json` contents and (empty) projection records.
    pub saved: SavedModel,
    /// What was imported.
    pub report: ImportReport,
}

fn bad_tree(files: &CheckpointFiles, reason: String) -> Error {
    Error::BadTree {
        path: files.structure.clone(),
        reason,
    }
}

/// Maps the reference tree onto our complete-tree topology: live branches are decisions,
/// branches that pruning bypassed are pass-throughs towards the kept child, everything
/// else is removed. Returns the topology and the heap index of every live node.
fn topology_of(
    tree: &ReferenceTree,
    depth: usize,
    files: &CheckpointFiles,
) -> Result<(Topology, HashMap<u32, usize>)> {
    let bad = |r: String| bad_tree(files, r);
    let complete = Topology::complete(depth).map_err(|e| bad(e.to_string()))?;
    let heap = heap_positions(tree, &complete, depth).map_err(bad)?;
    let states = branch_states(tree, &complete, &heap).map_err(bad)?;
    let topology = Topology::from_states(depth, states).map_err(|e| bad(e.to_string()))?;
    // Our saved leaf keys must be the reference's.
    for n in tree.leaves() {
        let ours = leaf_key(&topology.effective_path(heap[&n.index]));
        if ours != n.leaf_key() {
            return Err(bad(format!(
                "leaf {} maps to key `{ours}`, the reference has `{}`",
                n.index,
                n.leaf_key()
            )));
        }
    }
    Ok((topology, heap))
}

/// The heap index in the complete tree of every live node, by `_index`; checks that
/// branches and leaves sit at branch and leaf positions, once each, under root 0.
fn heap_positions(
    tree: &ReferenceTree,
    complete: &Topology,
    depth: usize,
) -> std::result::Result<HashMap<u32, usize>, String> {
    let p = complete.num_branches();
    let mut heap = HashMap::new();
    for n in &tree.nodes {
        let h = complete
            .heap_of(NodeId(n.index))
            .ok_or_else(|| format!("node index {} does not exist at depth {depth}", n.index))?;
        let leaf_position = h >= p;
        if leaf_position != n.children.is_none() {
            let kind = |leaf: bool| if leaf { "leaf" } else { "branch" };
            return Err(format!(
                "node {} is a {} but its index is a {} of the complete tree",
                n.index,
                kind(n.children.is_none()),
                kind(leaf_position),
            ));
        }
        if heap.insert(n.index, h).is_some() {
            return Err(format!("node index {} appears twice", n.index));
        }
    }
    match tree.nodes.first() {
        Some(root) if root.index == 0 => Ok(heap),
        Some(root) => Err(format!("the root has index {}, not 0", root.index)),
        None => Err("the tree has no nodes".into()),
    }
}

/// The state of every branch of the complete tree: live branches decide, the branches
/// between a live branch and a child that pruning re-linked to it pass towards that
/// child, all others are removed.
fn branch_states(
    tree: &ReferenceTree,
    complete: &Topology,
    heap: &HashMap<u32, usize>,
) -> std::result::Result<Vec<BranchState>, String> {
    let mut states = vec![BranchState::Removed; complete.num_branches()];
    for n in tree.branches() {
        states[heap[&n.index]] = BranchState::Decision;
    }
    for n in tree.branches() {
        let h = heap[&n.index];
        let Some((l, r)) = n.children else { continue };
        for (child, side) in [(l, 2 * h + 1), (r, 2 * h + 2)] {
            let mut chain = Vec::new();
            let mut x = heap[&child];
            while x > side {
                let parent = (x - 1) / 2;
                chain.push((parent, x % 2 == 1));
                x = parent;
            }
            if x != side {
                return Err(format!(
                    "node {child}, a child of {}, lies outside that side's subtree",
                    n.index
                ));
            }
            for (anc, went_left) in chain {
                if states[anc] != BranchState::Removed {
                    return Err(format!(
                        "branch {} is both bypassed and used",
                        complete.node_id(anc)
                    ));
                }
                states[anc] = if went_left {
                    BranchState::PassLeft
                } else {
                    BranchState::PassRight
                };
            }
        }
    }
    Ok(states)
}

fn depth_of(num_prototypes: usize) -> Option<usize> {
    let n = num_prototypes.checked_add(1)?;
    if n.is_power_of_two() && n >= 2 {
        Some(n.trailing_zeros() as usize)
    } else {
        None
    }
}

fn auto_stage(dir: &Path, pruned: bool) -> String {
    let name = dir
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.contains("projected") {
        "projected".into()
    } else if pruned {
        "pruned".into()
    } else {
        "trained".into()
    }
}

/// Converts a read checkpoint into our model on `device`.
pub fn convert(
    ckpt: &ReferenceCheckpoint,
    options: &ImportOptions,
    device: &Device,
) -> Result<Imported> {
    let tree = &ckpt.tree;
    let files = &ckpt.files;
    let (depth, proto_dim) = architecture_of(tree, files)?;
    let mut keys: Vec<String> = ckpt.tensors.keys().cloned().collect();
    keys.sort();
    if ckpt.tensors.contains_key("_add_on.0.bias") {
        return Err(Error::Unsupported(
            "an add-on convolution with a bias (the reference's has none)".into(),
        ));
    }
    let backbone = detect_backbone(&keys, tree.backbone_class.as_deref())?;
    let names = class_names(options, tree.num_classes)?;

    let (topology, heap) = topology_of(tree, depth, files)?;
    let want_leaves = check_leaf_keys(tree, &keys, files)?;
    let leaf_mode = if tree.kontschieder_normalization {
        LeafMode::KontschiederNormalization
    } else {
        LeafMode::Softmax
    };
    let leaves = convert_leaves(ckpt, &heap, depth, leaf_mode, device)?;
    let prototype_rows = prototype_rows(tree, &topology, files)?;
    let permuted = permuted_prototypes(ckpt, &prototype_rows, proto_dim)?;

    let config = TreeConfig {
        backbone,
        depth,
        proto_dim,
        num_classes: tree.num_classes,
    };
    let valid = config.check().map_err(prototree_tree::Error::from)?;
    let mut model = ProtoTree::new(&valid, device, 0)?;
    let needed = load_needed(&model, ckpt, &permuted, backbone)?;
    let ignored = ignored_tensors(ckpt, &keys, &needed, &want_leaves, backbone)?;
    model.set_leaves(leaves)?;
    let pruned = topology.num_decisions() < tree.num_prototypes;
    let num_decisions = topology.num_decisions();
    let num_live_leaves = topology.num_live_leaves();
    model.set_topology(topology)?;

    let stage = options
        .stage
        .clone()
        .unwrap_or_else(|| auto_stage(&files.structure, pruned));
    let meta = model_meta(config, names, options);
    let model_stage: ModelStage = stage
        .parse()
        .map_err(|e| Error::Unsupported(format!("--stage: {e}")))?;
    let report = ImportReport {
        files: files.clone(),
        output: None,
        backbone,
        backbone_class: tree.backbone_class.clone(),
        depth,
        num_classes: tree.num_classes,
        proto_dim,
        num_decisions,
        num_leaves: num_live_leaves,
        pruned,
        stage,
        leaf_mode,
        log_probabilities: tree.log_probabilities,
        prototype_rows,
        ignored_tensors: ignored,
    };
    Ok(Imported {
        saved: SavedModel::from_parts(model, meta, Vec::new(), model_stage)?,
        report,
    })
}

/// Our `config.json` contents for an imported tree: the reference's preprocessing, no
/// training configuration.
fn model_meta(config: TreeConfig, class_names: Vec<String>, options: &ImportOptions) -> ModelMeta {
    ModelMeta {
        format_version: FORMAT_VERSION,
        tree: config,
        class_names,
        preprocessing: Preprocessing {
            image_size: options.image_size.unwrap_or(REFERENCE_IMAGE_SIZE),
            mean: REFERENCE_MEAN,
            std: REFERENCE_STD,
        },
        train: None,
    }
}

/// The depth of the complete tree and the prototype length `D`, after checking that the
/// prototypes are 1x1 patches, that their number is `2^depth - 1` for a supported depth,
/// and that the add-on is the reference's.
fn architecture_of(tree: &ReferenceTree, files: &CheckpointFiles) -> Result<(usize, usize)> {
    let (w1, h1, proto_dim) = tree.prototype_shape;
    if (w1, h1) != (1, 1) {
        return Err(Error::Unsupported(format!(
            "prototypes of {w1}x{h1} latent patches (only 1x1, the reference's default, are supported)"
        )));
    }
    let depth = depth_of(tree.num_prototypes)
        .filter(|d| *d <= prototree_tree::topology::MAX_DEPTH)
        .ok_or_else(|| {
            bad_tree(
                files,
                format!(
                    "{} prototypes is not 2^depth - 1 for a supported depth",
                    tree.num_prototypes
                ),
            )
        })?;
    let add_on_ok = tree.add_on_classes.is_empty()
        || (tree.add_on_classes.len() == 2
            && tree.add_on_classes[0].ends_with("Conv2d")
            && tree.add_on_classes[1].ends_with("Sigmoid"));
    if !add_on_ok {
        return Err(Error::Unsupported(format!(
            "add-on layers [{}] (expected the reference's Conv2d(1x1, no bias) + Sigmoid)",
            tree.add_on_classes.join(", ")
        )));
    }
    Ok((depth, proto_dim))
}

/// The given class names (there must be `k`), or `class_000`, `class_001`, ….
fn class_names(options: &ImportOptions, k: usize) -> Result<Vec<String>> {
    match &options.class_names {
        Some(n) if n.len() != k => Err(Error::ClassNames {
            given: n.len(),
            expected: k,
        }),
        Some(n) => Ok(n.clone()),
        None => Ok((0..k).map(|c| format!("class_{c:03}")).collect()),
    }
}

/// Checks that the leaf tensors of the checkpoint are exactly the live leaves of the
/// pickled tree; returns their keys.
fn check_leaf_keys(
    tree: &ReferenceTree,
    keys: &[String],
    files: &CheckpointFiles,
) -> Result<BTreeSet<String>> {
    let want_leaves: BTreeSet<String> = tree.leaves().map(|n| n.leaf_key()).collect();
    let have_leaves: BTreeSet<String> = keys
        .iter()
        .filter(|k| k.starts_with("_root") && k.ends_with("._dist_params"))
        .cloned()
        .collect();
    if want_leaves == have_leaves {
        return Ok(want_leaves);
    }
    let mut diff: Vec<String> = have_leaves
        .symmetric_difference(&want_leaves)
        .map(|k| {
            if want_leaves.contains(k) {
                format!("{k} (missing)")
            } else {
                format!("{k} (not in the pickled tree)")
            }
        })
        .collect();
    diff.sort();
    Err(Error::Keys {
        path: files.tensors.clone(),
        problem: format!(
            "leaf tensors do not match the tree pickled in {}",
            files.structure.display()
        ),
        keys: diff,
    })
}

/// Our leaves on `device`: one row of softmax parameters per leaf of the complete tree
/// (zeros where no live leaf lands), converted as `leaf_mode` says.
fn convert_leaves(
    ckpt: &ReferenceCheckpoint,
    heap: &HashMap<u32, usize>,
    depth: usize,
    leaf_mode: LeafMode,
    device: &Device,
) -> Result<Leaves> {
    let k = ckpt.tree.num_classes;
    let p = ckpt.tree.num_prototypes;
    let mut rows = vec![Tensor::zeros(k, DType::F32, &Device::Cpu)?; 1usize << depth];
    for n in ckpt.tree.leaves() {
        let key = n.leaf_key();
        let t = &ckpt.tensors[&key];
        if t.dims() != [k] {
            return Err(Error::Keys {
                path: ckpt.files.tensors.clone(),
                problem: format!("leaf tensor has shape {:?}, expected [{k}]", t.dims()),
                keys: vec![key],
            });
        }
        let t = t.to_dtype(DType::F32)?;
        rows[heap[&n.index] - p] = match leaf_mode {
            LeafMode::Softmax => t,
            LeafMode::KontschiederNormalization => {
                normalised_leaf_logits(&t)?.ok_or_else(|| Error::Keys {
                    path: ckpt.files.tensors.clone(),
                    problem: "Kontschieder-normalised leaf is not a non-negative vector \
                              with a positive sum"
                        .into(),
                    keys: vec![key],
                })?
            }
        };
    }
    Ok(Leaves::from_params(
        Tensor::stack(&rows, 0)?.to_device(device)?,
    )?)
}

/// `ln(p / Σp)` of a Kontschieder-normalised leaf `p` (whose softmax is `p / Σp`);
/// `Ok(None)` unless `p` is non-negative with a positive, finite sum.
fn normalised_leaf_logits(t: &Tensor) -> Result<Option<Tensor>> {
    let v = t.to_vec1::<f32>()?;
    let sum: f32 = v.iter().sum();
    if !(sum > 0.0 && sum.is_finite()) || v.iter().any(|x| *x < 0.0) {
        return Ok(None);
    }
    let logs: Vec<f32> = v
        .iter()
        .map(|x| (x / sum).max(MIN_LEAF_PROBABILITY).ln())
        .collect();
    Ok(Some(Tensor::new(logs, &Device::Cpu)?))
}

/// For each of our prototype rows (heap order), the reference's row: `_out_map` of the
/// node at that heap position, checked to cover every branch and to be a permutation.
fn prototype_rows(
    tree: &ReferenceTree,
    topology: &Topology,
    files: &CheckpointFiles,
) -> Result<Vec<u32>> {
    let p = tree.num_prototypes;
    let expected_ids: BTreeSet<u32> = (0..p).map(|h| topology.node_id(h).0).collect();
    let mapped_ids: BTreeSet<u32> = tree.out_map.keys().copied().collect();
    if expected_ids != mapped_ids {
        let listed = |a: &BTreeSet<u32>, b: &BTreeSet<u32>| -> String {
            let ids: Vec<String> = a.difference(b).map(|i| i.to_string()).collect();
            ids.join(", ")
        };
        return Err(bad_tree(
            files,
            format!(
                "`_out_map` does not cover the {p} branches: missing nodes [{}], unexpected nodes [{}]",
                listed(&expected_ids, &mapped_ids),
                listed(&mapped_ids, &expected_ids)
            ),
        ));
    }
    let prototype_rows: Vec<u32> = (0..p)
        .map(|h| tree.out_map[&topology.node_id(h).0])
        .collect();
    let distinct: BTreeSet<u32> = prototype_rows.iter().copied().collect();
    if distinct.len() != p || prototype_rows.iter().any(|r| *r as usize >= p) {
        return Err(bad_tree(
            files,
            format!("`_out_map` rows are not a permutation of 0..{p}"),
        ));
    }
    Ok(prototype_rows)
}

/// The checkpoint's prototypes `(p, D, 1, 1)` as f32, rows permuted into our heap order.
fn permuted_prototypes(
    ckpt: &ReferenceCheckpoint,
    prototype_rows: &[u32],
    proto_dim: usize,
) -> Result<Tensor> {
    let p = prototype_rows.len();
    let path = &ckpt.files.tensors;
    let protos = ckpt.tensors.get(PROTOTYPES).ok_or_else(|| Error::Keys {
        path: path.clone(),
        problem: "missing".into(),
        keys: vec![PROTOTYPES.into()],
    })?;
    if protos.dims() != [p, proto_dim, 1, 1] {
        return Err(Error::Keys {
            path: path.clone(),
            problem: format!(
                "shape {:?}, expected [{p}, {proto_dim}, 1, 1] (num_prototypes, prototype_shape)",
                protos.dims()
            ),
            keys: vec![PROTOTYPES.into()],
        });
    }
    let index = Tensor::new(prototype_rows.to_vec(), &Device::Cpu)?;
    Ok(protos.to_dtype(DType::F32)?.index_select(&index, 0)?)
}

/// Loads every variable of `model` from the checkpoint (the prototypes from `permuted`);
/// fails listing the variables the checkpoint lacks. Returns the variables' names.
fn load_needed(
    model: &ProtoTree,
    ckpt: &ReferenceCheckpoint,
    permuted: &Tensor,
    backbone: BackboneKind,
) -> Result<Vec<String>> {
    let needed: Vec<String> = {
        let data = model.varmap().data().lock().map_err(|_| {
            Error::Tree(prototree_tree::Error::Data(
                "parameter map lock poisoned".into(),
            ))
        })?;
        data.keys().cloned().collect()
    };
    let mut load: HashMap<String, Tensor> = HashMap::new();
    for name in &needed {
        if name == PROTOTYPES {
            load.insert(name.clone(), permuted.clone());
        } else if let Some(t) = ckpt.tensors.get(name) {
            load.insert(name.clone(), t.clone());
        }
    }
    let mut missing: Vec<String> = needed
        .iter()
        .filter(|n| !load.contains_key(*n))
        .cloned()
        .collect();
    missing.sort();
    if !missing.is_empty() {
        return Err(Error::Keys {
            path: ckpt.files.tensors.clone(),
            problem: format!("needed by our {backbone} model but missing"),
            keys: missing,
        });
    }
    model.load_tensors(&load, &ckpt.files.tensors)?;
    Ok(needed)
}

/// The checkpoint's tensors our model does not use that may be dropped (BatchNorm
/// `num_batches_tracked`), sorted; fails listing any other unused tensor.
fn ignored_tensors(
    ckpt: &ReferenceCheckpoint,
    keys: &[String],
    needed: &[String],
    want_leaves: &BTreeSet<String>,
    backbone: BackboneKind,
) -> Result<Vec<String>> {
    let used: BTreeSet<&str> = needed
        .iter()
        .map(String::as_str)
        .chain(want_leaves.iter().map(String::as_str))
        .chain([ADD_ON_WEIGHT, PROTOTYPES])
        .collect();
    let is_counter = |k: &String| k.ends_with(".num_batches_tracked");
    let (mut ignored, mut unused): (Vec<String>, Vec<String>) = keys
        .iter()
        .filter(|k| !used.contains(k.as_str()))
        .cloned()
        .partition(is_counter);
    unused.extend(ckpt.skipped.iter().filter(|k| !is_counter(k)).cloned());
    ignored.extend(ckpt.skipped.iter().filter(|k| is_counter(k)).cloned());
    if !unused.is_empty() {
        return Err(Error::Keys {
            path: ckpt.files.tensors.clone(),
            problem: format!("cannot be mapped onto our {backbone} model"),
            keys: unused,
        });
    }
    ignored.sort();
    Ok(ignored)
}

/// Reads the reference checkpoint in `dir` and converts it into our model on `device`.
pub fn load_reference(dir: &Path, options: &ImportOptions, device: &Device) -> Result<Imported> {
    let ckpt = ReferenceCheckpoint::read(dir)?;
    convert(&ckpt, options, device)
}

/// Imports the reference checkpoint in `dir` and writes our model directory `out`
/// (`config.json`, `model.safetensors`, `tree.bin`).
///
/// ```no_run
/// use std::path::Path;
/// use prototree_reference::{import_reference, ImportOptions};
///
/// let report = import_reference(
///     Path::new("runs/cub/checkpoints/pruned_and_projected"),
///     Path::new("models/cub-reference"),
///     &ImportOptions::default(),
/// )?;
/// println!("{} decisions, {} leaves", report.num_decisions, report.num_leaves);
/// # Ok::<(), prototree_reference::Error>(())
/// ```
pub fn import_reference(dir: &Path, out: &Path, options: &ImportOptions) -> Result<ImportReport> {
    let imported = load_reference(dir, options, &Device::Cpu)?;
    let saved = &imported.saved;
    saved.save(out)?;
    let mut report = imported.report;
    report.output = Some(out.to_path_buf());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_from_prototype_count() {
        assert_eq!(depth_of(1), Some(1));
        assert_eq!(depth_of(511), Some(9));
        assert_eq!(depth_of(0), None);
        assert_eq!(depth_of(6), None);
    }

    #[test]
    fn stage_from_directory_name() {
        let p = Path::new("run/checkpoints/pruned_and_projected/tree.pkl");
        assert_eq!(auto_stage(p, true), "projected");
        let p = Path::new("run/checkpoints/pruned/tree.pkl");
        assert_eq!(auto_stage(p, true), "pruned");
        let p = Path::new("run/checkpoints/latest/model.pth");
        assert_eq!(auto_stage(p, false), "trained");
    }

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync>() {}
        check::<ImportReport>();
        check::<Imported>();
        check::<ReferenceCheckpoint>();
    }
}
