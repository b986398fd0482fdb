//! The model directory: `config.json` (architecture, classes, preprocessing, schedule),
//! `model.safetensors` (every tensor, under the reference's state_dict names) and
//! `tree.bin` (bincode 2: the pruned topology and projection records).
//!
//! Every file is written atomically (temporary file in the same directory, then rename),
//! so an interrupted save leaves the previous model intact. Loading checks the format
//! version, the tensor names and shapes and the class count, and says what mismatched.
//!
//! Every size a file claims is bounded before anything is allocated (docs/limits.md):
//! `config.json` and `tree.bin` are read only up to their maxima, bincode decodes under
//! a claim limit, every configuration value is checked against its limit (image side,
//! depth, prototype length, class count, finite normalisation), the model and one batch
//! of prediction must fit the memory budget, and `model.safetensors` must fit it too
//! (its header's shapes are cross-checked against the byte ranges by the safetensors
//! reader) and hold only finite values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::TreeConfig;
use crate::leaves::Leaves;
use crate::model::ProtoTree;
use crate::stage::ModelStage;
use crate::topology::{BranchState, Direction, NodeId, Topology};
use crate::train_config::TrainConfig;
use crate::{Error, Result};

/// Version of the model directory format written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// File name of the configuration.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the tensors.
pub const TENSORS_FILE: &str = "model.safetensors";
/// File name of the topology and projection records.
pub const TREE_FILE: &str = "tree.bin";
/// Largest `tree.bin` accepted, and bincode's limit on the bytes its length fields claim.
const TREE_FILE_LIMIT: usize = prototree_limits::maxima::MAX_TREE_BIN_BYTES as usize;
/// Images per forward pass of prediction (`prototree predict`), for the memory check.
pub const PREDICT_BATCH: usize = 16;

/// Input preprocessing stored with a model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Square input side in pixels.
    pub image_size: u32,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
}

impl Preprocessing {
    /// The per-channel normalisation the model's inputs get.
    pub fn normalization(&self) -> prototree_data::Normalization {
        prototree_data::Normalization {
            mean: self.mean,
            std: self.std,
        }
    }

    /// Checks the input side and that the normalisation is finite, with a standard
    /// deviation that is neither zero nor tiny (see docs/limits.md).
    pub fn check(&self) -> std::result::Result<(), crate::ConfigError> {
        use prototree_limits::check::{finite_in, in_range, Bounds};
        use prototree_limits::maxima;
        in_range(
            "",
            "image_size",
            u64::from(self.image_size),
            maxima::MIN_IMAGE_SIDE,
            maxima::MAX_IMAGE_SIDE,
        )?;
        for c in 0..3 {
            let m = f64::from(self.mean[c]);
            let s = f64::from(self.std[c]);
            let (lo, hi) = (-maxima::MAX_NORM_MEAN, maxima::MAX_NORM_MEAN);
            finite_in("", &format!("mean[{c}]"), m, lo, hi, Bounds::Closed)?;
            let (lo, hi) = (maxima::MIN_NORM_STD, maxima::MAX_NORM_STD);
            finite_in("", &format!("std[{c}]"), s, lo, hi, Bounds::Closed)?;
        }
        Ok(())
    }
}

/// Everything in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Format version ([`FORMAT_VERSION`] when written by this build).
    pub format_version: u32,
    /// Architecture.
    pub tree: TreeConfig,
    /// Class names, index = class id.
    pub class_names: Vec<String>,
    /// Input preprocessing.
    pub preprocessing: Preprocessing,
    /// The schedule the model was trained with, if any.
    #[serde(default)]
    pub train: Option<TrainConfig>,
}

impl ModelMeta {
    /// The data protocol the model was trained with: the one its schedule records, else
    /// the plain protocol (imported models, and builds before protocols were recorded).
    pub fn protocol(&self) -> prototree_data::Protocol {
        self.train
            .as_ref()
            .and_then(|t| t.protocol)
            .unwrap_or(prototree_data::Protocol::Plain)
    }
}

/// `config.json` as written: the configuration and the bundle's stage.
#[derive(Serialize)]
struct ConfigOut<'a> {
    #[serde(flatten)]
    meta: &'a ModelMeta,
    stage: ModelStage,
}

/// `config.json` as read (files without a stage are `trained`).
#[derive(Deserialize)]
struct ConfigIn {
    #[serde(flatten)]
    meta: ModelMeta,
    #[serde(default)]
    stage: ModelStage,
}

/// Where a projected prototype came from (spec §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectionRecord {
    /// The decision node (reference numbering).
    pub node: NodeId,
    /// Prototype row (heap index of the node).
    pub row: u32,
    /// Index of the source image in the projection data set's order.
    pub image_index: u64,
    /// Path of the source image, as given to the projection.
    pub image_path: String,
    /// Row of the patch in the feature map.
    pub patch_row: u32,
    /// Column of the patch in the feature map.
    pub patch_col: u32,
    /// Feature-map height.
    pub fmap_height: u32,
    /// Feature-map width.
    pub fmap_width: u32,
    /// Distance of the prototype to the patch before projection.
    pub distance: f32,
}

/// Contents of `tree.bin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TreeFile {
    format_version: u32,
    depth: u32,
    branch_states: Vec<BranchState>,
    projections: Vec<ProjectionRecord>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A temporary sibling of `path` for atomic writes.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// The state_dict key of a leaf from its effective path (`_root.l.r._dist_params`).
pub fn leaf_key(path: &[Direction]) -> String {
    let mut key = String::from("_root");
    for d in path {
        key.push_str(match d {
            Direction::Left => ".l",
            Direction::Right => ".r",
        });
    }
    key.push_str("._dist_params");
    key
}

/// All tensors of a model under their state_dict names, leaves included.
pub fn named_tensors(model: &ProtoTree) -> Result<HashMap<String, Tensor>> {
    let mut map: HashMap<String, Tensor> = HashMap::new();
    {
        let data = model
            .varmap()
            .data()
            .lock()
            .map_err(|_| Error::Data("parameter map lock poisoned".into()))?;
        for (name, var) in data.iter() {
            map.insert(name.clone(), var.as_tensor().detach());
        }
    }
    let topo = model.topology();
    let params = model.leaves().params();
    for (j, live) in topo.live_leaves().iter().enumerate() {
        if *live {
            let key = leaf_key(&topo.effective_path(topo.leaf_heap(j)));
            map.insert(key, params.get(j)?);
        }
    }
    Ok(map)
}

/// Saves `model` into directory `dir` (created if missing); its stage follows from what
/// it holds (projection records: projected; a pruned topology: pruned; else trained).
/// [`crate::SavedModel::save`] writes a bundle with the stage it knows.
pub fn save_model(
    dir: &Path,
    model: &ProtoTree,
    meta: &ModelMeta,
    projections: &[ProjectionRecord],
) -> Result<()> {
    let pruned = model
        .topology()
        .branch_states()
        .iter()
        .any(|s| *s != BranchState::Decision);
    let stage = if !projections.is_empty() {
        ModelStage::Projected
    } else if pruned {
        ModelStage::Pruned
    } else {
        ModelStage::Trained
    };
    write_model_dir(dir, model, meta, projections, stage)
}

/// Writes the model directory `dir` (created if missing) with `stage` in `config.json`.
pub(crate) fn write_model_dir(
    dir: &Path,
    model: &ProtoTree,
    meta: &ModelMeta,
    projections: &[ProjectionRecord],
    stage: ModelStage,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut meta = meta.clone();
    meta.format_version = FORMAT_VERSION;
    meta.tree = model.config().config().clone();
    let config = ConfigOut { meta: &meta, stage };
    let json = serde_json::to_vec_pretty(&config).map_err(|e| Error::BadModelFile {
        path: dir.join(CONFIG_FILE),
        reason: e.to_string(),
    })?;
    let tensors_path = dir.join(TENSORS_FILE);
    let tmp = temp_path(&tensors_path);
    let tensors = named_tensors(model)?;
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, &tensors_path).map_err(io_err(&tensors_path))?;
    let tree = TreeFile {
        format_version: FORMAT_VERSION,
        depth: model.topology().depth() as u32,
        branch_states: model.topology().branch_states().to_vec(),
        projections: projections.to_vec(),
    };
    let bytes = bincode::serde::encode_to_vec(&tree, bincode::config::standard()).map_err(|e| {
        Error::BadModelFile {
            path: dir.join(TREE_FILE),
            reason: e.to_string(),
        }
    })?;
    write_atomic(&dir.join(TREE_FILE), &bytes)?;
    // config.json last: a directory with a config is complete.
    write_atomic(&dir.join(CONFIG_FILE), &json)
}

/// Reads and checks `config.json` of a model directory.
pub fn load_meta(dir: &Path) -> Result<ModelMeta> {
    Ok(load_config(dir)?.0)
}

/// Reads and checks `config.json`: the configuration and the stage.
fn load_config(dir: &Path) -> Result<(ModelMeta, ModelStage)> {
    let path = dir.join(CONFIG_FILE);
    let bytes = read_limited(&path, prototree_limits::maxima::MAX_CONFIG_JSON_BYTES)?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| Error::BadModelFile {
            path: path.clone(),
            reason: format!("not valid JSON: {e}"),
        })?;
    check_json_fields(&value).map_err(|reason| Error::BadModelFile {
        path: path.clone(),
        reason,
    })?;
    if let Some(v) = value.get("format_version").and_then(|v| v.as_u64()) {
        if v > u64::from(FORMAT_VERSION) {
            return Err(Error::UnsupportedVersion {
                path,
                found: v as u32,
                supported: FORMAT_VERSION,
            });
        }
    }
    let ConfigIn { meta, stage } =
        serde_json::from_value(value).map_err(|e| Error::BadModelFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let bad = |reason: String| Error::BadModelFile {
        path: path.clone(),
        reason,
    };
    let valid = meta.tree.check().map_err(|e| bad(e.in_section("tree")))?;
    meta.preprocessing
        .check()
        .map_err(|e| bad(e.in_section("preprocessing")))?;
    if let Some(train) = &meta.train {
        train.check().map_err(|e| bad(e.in_section("train")))?;
    }
    if let Some((i, name)) = meta
        .class_names
        .iter()
        .enumerate()
        .find(|(_, n)| n.len() as u64 > prototree_limits::maxima::MAX_CLASS_NAME_BYTES)
    {
        return Err(bad(format!(
            "`class_names[{i}]` is {} bytes long, over the limit of {}",
            name.len(),
            prototree_limits::maxima::MAX_CLASS_NAME_BYTES
        )));
    }
    crate::memory::check_inference("", &valid, meta.preprocessing.image_size, PREDICT_BATCH)
        .map_err(|e| bad(e.to_string()))?;
    if meta.class_names.len() != meta.tree.num_classes {
        return Err(Error::BadModelFile {
            path,
            reason: format!(
                "{} class names for {} classes",
                meta.class_names.len(),
                meta.tree.num_classes
            ),
        });
    }
    Ok((meta, stage))
}

/// Reads a model directory written by [`save_model`] onto `device`: the model, its
/// configuration, projection records and stage (the bundle's `load_model` wraps them).
pub(crate) fn read_model_dir(
    dir: &Path,
    device: &Device,
) -> Result<(ProtoTree, ModelMeta, Vec<ProjectionRecord>, ModelStage)> {
    let (meta, stage) = load_config(dir)?;
    let tree_path = dir.join(TREE_FILE);
    let bytes = read_limited(&tree_path, TREE_FILE_LIMIT as u64)?;
    let bad_tree = |reason: String| Error::BadModelFile {
        path: tree_path.clone(),
        reason,
    };
    let (tree, _): (TreeFile, usize) = bincode::serde::decode_from_slice(
        &bytes,
        bincode::config::standard().with_limit::<TREE_FILE_LIMIT>(),
    )
    .map_err(|e| bad_tree(format!("corrupt or truncated: {e}")))?;
    if tree.format_version > FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: tree_path,
            found: tree.format_version,
            supported: FORMAT_VERSION,
        });
    }
    if tree.depth as usize != meta.tree.depth {
        return Err(bad_tree(format!(
            "depth {} but config.json says {}",
            tree.depth, meta.tree.depth
        )));
    }
    let topology = Topology::from_states(meta.tree.depth, tree.branch_states)
        .map_err(|e| bad_tree(e.to_string()))?;
    let valid = meta.tree.check()?;
    let mut model = ProtoTree::new(&valid, device, 0)?;
    let tensors_path = dir.join(TENSORS_FILE);
    if !tensors_path.is_file() {
        return Err(Error::Io {
            path: tensors_path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "missing"),
        });
    }
    prototree_torch::safetensors_header::check_header(&tensors_path).map_err(|e| match e {
        prototree_torch::Error::Io { path, source } => Error::Io { path, source },
        other => Error::BadModelFile {
            path: tensors_path.clone(),
            reason: other
                .to_string()
                .replacen(&format!("{}: ", tensors_path.display()), "", 1),
        },
    })?;
    let tensors =
        candle_core::safetensors::load(&tensors_path, device).map_err(|e| Error::BadModelFile {
            path: tensors_path.clone(),
            reason: format!("corrupt or truncated: {e}"),
        })?;
    check_finite(&tensors, &tensors_path)?;
    model.load_tensors(&tensors, &tensors_path)?;
    let (l, k) = (valid.num_leaves(), valid.num_classes());
    let mut rows = Vec::with_capacity(l);
    for (j, live) in topology.live_leaves().iter().enumerate() {
        if *live {
            let key = leaf_key(&topology.effective_path(topology.leaf_heap(j)));
            let t = tensors.get(&key).ok_or_else(|| Error::BadModelFile {
                path: tensors_path.clone(),
                reason: format!("missing leaf tensor `{key}`"),
            })?;
            if t.dims() != [k] {
                return Err(Error::BadModelFile {
                    path: tensors_path.clone(),
                    reason: format!("leaf `{key}` has shape {:?}, expected [{k}]", t.dims()),
                });
            }
            rows.push(t.to_dtype(candle_core::DType::F32)?);
        } else {
            rows.push(Tensor::zeros(k, candle_core::DType::F32, device)?);
        }
    }
    model.set_leaves(Leaves::from_params(Tensor::stack(&rows, 0)?)?)?;
    model.set_topology(topology)?;
    let side = meta.preprocessing.image_size;
    for rec in &tree.projections {
        if rec.row as usize >= valid.num_prototypes() {
            return Err(bad_tree(format!(
                "projection record for prototype row {} of {}",
                rec.row,
                valid.num_prototypes()
            )));
        }
        let in_map = rec.fmap_height <= side
            && rec.fmap_width <= side
            && rec.patch_row < rec.fmap_height
            && rec.patch_col < rec.fmap_width;
        if !(in_map && rec.distance.is_finite() && rec.distance >= 0.0) {
            return Err(bad_tree(format!(
                "projection record of prototype row {}: patch ({}, {}) of a {} × {} feature map at distance {} (the map must be at most the input side {side}, the patch inside it, the distance finite and >= 0)",
                rec.row, rec.patch_row, rec.patch_col, rec.fmap_height, rec.fmap_width, rec.distance
            )));
        }
    }
    Ok((model, meta, tree.projections, stage))
}

/// The integer fields of `config.json` (JSON pointer, largest value of the field's type).
const INTEGER_FIELDS: [(&str, u64); 10] = [
    ("/format_version", u32::MAX as u64),
    ("/tree/depth", usize::MAX as u64),
    ("/tree/proto_dim", usize::MAX as u64),
    ("/tree/num_classes", usize::MAX as u64),
    ("/preprocessing/image_size", u32::MAX as u64),
    ("/train/epochs", usize::MAX as u64),
    ("/train/batch_size", usize::MAX as u64),
    ("/train/freeze_epochs", usize::MAX as u64),
    ("/train/backbone_warmup_epochs", usize::MAX as u64),
    ("/train/seed", u64::MAX),
];

/// The floating-point fields of `config.json`.
const FLOAT_FIELDS: [&str; 12] = [
    "/preprocessing/mean/0",
    "/preprocessing/mean/1",
    "/preprocessing/mean/2",
    "/preprocessing/std/0",
    "/preprocessing/std/1",
    "/preprocessing/std/2",
    "/train/lr",
    "/train/lr_block",
    "/train/lr_net",
    "/train/weight_decay",
    "/train/adam_eps",
    "/train/gamma",
];

/// `tree.depth`, `preprocessing.mean[0]` for a JSON pointer.
fn field_name(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.trim_start_matches('/').split('/') {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// Names the field of a number that does not fit its type (a negative or fractional
/// count, a count past 64 bits, `null` where JSON cannot hold NaN), which serde would
/// only report as "invalid value" without the field.
fn check_json_fields(value: &serde_json::Value) -> std::result::Result<(), String> {
    for (pointer, max) in INTEGER_FIELDS {
        if let Some(v) = value.pointer(pointer) {
            if v.as_u64().is_none_or(|n| n > max) {
                return Err(format!(
                    "`{}` is {v}, must be an integer between 0 and {max}",
                    field_name(pointer)
                ));
            }
        }
    }
    for pointer in FLOAT_FIELDS {
        if let Some(v) = value.pointer(pointer) {
            if !v.is_number() {
                return Err(format!(
                    "`{}` is {v}, must be a finite number",
                    field_name(pointer)
                ));
            }
        }
    }
    Ok(())
}

/// [`prototree_limits::read_bounded`] with this crate's errors.
fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    prototree_limits::read_bounded(path, max).map_err(|e| match e {
        prototree_limits::Error::Io { path, source } => Error::Io { path, source },
        prototree_limits::Error::Limit(l) => Error::BadModelFile {
            path: path.to_path_buf(),
            reason: prototree_limits::LimitError {
                file: String::new(),
                ..l
            }
            .to_string(),
        },
    })
}

/// Refuses a tensor file holding NaN or infinite values.
fn check_finite(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        let t = &tensors[name];
        if !t.dtype().is_float() {
            continue;
        }
        let values = t
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(Error::BadModelFile {
                path: path.to_path_buf(),
                reason: format!("tensor `{name}` holds {v}: every weight must be finite"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_are_named() {
        assert_eq!(field_name("/tree/depth"), "tree.depth");
        assert_eq!(field_name("/preprocessing/std/1"), "preprocessing.std[1]");
        let v = serde_json::json!({"tree": {"depth": -1}});
        assert_eq!(
            check_json_fields(&v).unwrap_err(),
            format!(
                "`tree.depth` is -1, must be an integer between 0 and {}",
                usize::MAX
            )
        );
        let v = serde_json::json!({"preprocessing": {"image_size": 4294967296u64}});
        assert!(check_json_fields(&v)
            .unwrap_err()
            .contains("preprocessing.image_size"));
        let v = serde_json::json!({"preprocessing": {"std": [0.2, null, 0.2]}});
        assert_eq!(
            check_json_fields(&v).unwrap_err(),
            "`preprocessing.std[1]` is null, must be a finite number"
        );
    }

    #[test]
    fn leaf_keys_follow_the_reference() {
        assert_eq!(
            leaf_key(&[Direction::Left, Direction::Right]),
            "_root.l.r._dist_params"
        );
    }

    #[test]
    fn atomic_write_replaces_content() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"one")?;
        write_atomic(&p, b"two")?;
        assert_eq!(std::fs::read(&p)?, b"two");
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }
}
