//! Training checkpoints: a model directory plus `train_state.bin` (epoch, optimiser step
//! counts, history, best score, a fingerprint of the run's configuration) and
//! `optimizer.safetensors` (Adam moments).
//!
//! A checkpoint directory is replaced as a whole: the new one is written next to it
//! (`NAME.tmp`), the old one is renamed to `NAME.old`, the new one into place, and the old
//! one removed. A kill at any moment leaves either `NAME` or `NAME.old` complete, and
//! [`load_checkpoint`] falls back to `NAME.old`. Shuffling and augmentation are drawn from
//! `(seed, epoch)`, so no random-generator state needs saving: a resumed run draws exactly
//! what the uninterrupted run would have.
//!
//! A checkpoint written after an interruption also holds the interrupted epoch's progress
//! (and the epoch-start leaves in `optimizer.safetensors`), so a resumed run continues
//! that epoch at the next batch.
//!
//! What is saved is the learner's one [`LearnerState`]; the private `TrainStateFile`
//! below is only its byte layout in `train_state.bin` (formats 1 to 4 load; format 3
//! added the leaf-sharing signature of each epoch and the interrupted epoch's routing
//! entropy, format 4 each epoch's misrouted classes and re-seeded leaves).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use prototree_tree::io::{save_model, write_atomic, ModelMeta};
use prototree_tree::{load_model, SavedModel};
use prototree_tree::{EpochStats, ProtoTree};

use crate::adam::AdamState;
use crate::error::io_err;
use crate::param_group::{GroupMap, ParamGroup};
use crate::state::{LearnerState, PartialEpoch};
use crate::Result;

/// A model-file error naming `path`.
fn bad_file(path: PathBuf, reason: String) -> crate::Error {
    prototree_tree::Error::BadModelFile { path, reason }.into()
}

/// Version of the checkpoint state written by this build (2: interrupted-epoch progress;
/// 3: leaf sharing per epoch; 4: misrouted classes and re-seeded leaves per epoch).
pub const CHECKPOINT_VERSION: u32 = 4;
/// File name of the training state.
pub const TRAIN_STATE_FILE: &str = "train_state.bin";
/// File name of the optimiser moments.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Largest `train_state.bin` accepted.
const STATE_FILE_LIMIT: usize = prototree_limits::maxima::MAX_STATE_BIN_BYTES as usize;
/// Name of an interrupted epoch's epoch-start leaf parameters in `optimizer.safetensors`.
const PARTIAL_LEAVES: &str = "partial_epoch.epoch_start_leaves";
/// Name of an interrupted epoch's class leaf tally so far in `optimizer.safetensors`.
const PARTIAL_CLASS_LEAF_TALLY: &str = "partial_epoch.class_leaf_tally";

/// The progress of an interrupted epoch, as saved ([`PartialEpoch`] without its tensor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PartialEpochState {
    /// 1-based epoch that was interrupted.
    pub epoch: usize,
    /// Batches of that epoch already trained.
    pub batches_done: usize,
    /// Sum of their losses.
    pub loss_sum: f64,
    /// Sum of their accuracies.
    pub accuracy_sum: f64,
    /// Sum of their mean routing entropies.
    pub routing_entropy_sum: f64,
    /// Seconds spent on them.
    pub seconds: f64,
}

/// The layout of [`LearnerState`] in `train_state.bin` (format 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TrainStateFile {
    /// Format version ([`CHECKPOINT_VERSION`]).
    pub format_version: u32,
    /// Epochs completed.
    pub epochs_done: usize,
    /// Adam step counts of the three groups.
    pub optimizer_steps: [u64; 3],
    /// Statistics of every completed epoch.
    pub history: Vec<EpochStats>,
    /// The epoch with the best score so far.
    pub best_epoch: Option<usize>,
    /// The best score (test soft accuracy when evaluated, else training accuracy).
    pub best_score: f64,
    /// Identifies the run's configuration; a checkpoint resumes only the same run.
    pub fingerprint: String,
    /// Seconds spent training so far.
    pub train_seconds: f64,
    /// The interrupted epoch to continue, when the checkpoint was written on interruption.
    pub partial_epoch: Option<PartialEpochState>,
}

/// An epoch's statistics in formats 1 and 2 (no leaf sharing).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct EpochStatsV2 {
    epoch: usize,
    train_loss: f64,
    train_accuracy: f64,
    eval: Option<prototree_tree::EvalReport>,
    learning_rates: [f64; 3],
    backbone_frozen: bool,
    seconds: f64,
}

impl From<EpochStatsV2> for EpochStatsV3 {
    fn from(v: EpochStatsV2) -> Self {
        Self {
            base: v,
            leaf_sharing: None,
        }
    }
}

/// An epoch's statistics in format 3 (no re-seeded leaves): format 2's fields, then the
/// leaf sharing (bincode writes a nested struct as its fields in order, so the bytes are
/// those of one flat struct).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct EpochStatsV3 {
    base: EpochStatsV2,
    leaf_sharing: Option<LeafSharingV3>,
}

/// The leaf sharing of format 3 (no misrouted classes).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct LeafSharingV3 {
    leaves: Vec<prototree_tree::leaf_sharing::LeafClasses>,
    classes_without_leaf: Vec<usize>,
    shared_leaves: usize,
    routing_entropy: Option<f64>,
}

impl From<LeafSharingV3> for prototree_tree::LeafSharing {
    fn from(v: LeafSharingV3) -> Self {
        Self {
            leaves: v.leaves,
            classes_without_leaf: v.classes_without_leaf,
            shared_leaves: v.shared_leaves,
            misrouted_classes: Vec::new(),
            routing_entropy: v.routing_entropy,
        }
    }
}

impl From<EpochStatsV3> for EpochStats {
    fn from(v: EpochStatsV3) -> Self {
        let b = v.base;
        Self {
            epoch: b.epoch,
            train_loss: b.train_loss,
            train_accuracy: b.train_accuracy,
            eval: b.eval,
            learning_rates: b.learning_rates,
            backbone_frozen: b.backbone_frozen,
            seconds: b.seconds,
            leaf_sharing: v.leaf_sharing.map(Into::into),
            leaf_reseeds: Vec::new(),
        }
    }
}

/// An interrupted epoch in format 2 (no routing entropy).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct PartialEpochStateV2 {
    epoch: usize,
    batches_done: usize,
    loss_sum: f64,
    accuracy_sum: f64,
    seconds: f64,
}

/// The training state of checkpoint format 1 (no interrupted-epoch progress); the tests
/// also write it, as older builds did.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct TrainStateV1 {
    format_version: u32,
    epochs_done: usize,
    optimizer_steps: [u64; 3],
    history: Vec<EpochStatsV2>,
    best_epoch: Option<usize>,
    best_score: f64,
    fingerprint: String,
    train_seconds: f64,
}

/// The training state of checkpoint format 2; the tests also write it, as older builds
/// did.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct TrainStateV2 {
    format_version: u32,
    epochs_done: usize,
    optimizer_steps: [u64; 3],
    history: Vec<EpochStatsV2>,
    best_epoch: Option<usize>,
    best_score: f64,
    fingerprint: String,
    train_seconds: f64,
    partial_epoch: Option<PartialEpochStateV2>,
}

/// The training state of checkpoint format 3; the tests also write it, as older builds
/// did.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct TrainStateV3 {
    format_version: u32,
    epochs_done: usize,
    optimizer_steps: [u64; 3],
    history: Vec<EpochStatsV3>,
    best_epoch: Option<usize>,
    best_score: f64,
    fingerprint: String,
    train_seconds: f64,
    partial_epoch: Option<PartialEpochState>,
}

impl From<TrainStateV3> for TrainStateFile {
    fn from(v: TrainStateV3) -> Self {
        Self {
            format_version: v.format_version,
            epochs_done: v.epochs_done,
            optimizer_steps: v.optimizer_steps,
            history: v.history.into_iter().map(EpochStats::from).collect(),
            best_epoch: v.best_epoch,
            best_score: v.best_score,
            fingerprint: v.fingerprint,
            train_seconds: v.train_seconds,
            partial_epoch: v.partial_epoch,
        }
    }
}

impl From<TrainStateV1> for TrainStateV2 {
    fn from(v: TrainStateV1) -> Self {
        Self {
            format_version: v.format_version,
            epochs_done: v.epochs_done,
            optimizer_steps: v.optimizer_steps,
            history: v.history,
            best_epoch: v.best_epoch,
            best_score: v.best_score,
            fingerprint: v.fingerprint,
            train_seconds: v.train_seconds,
            partial_epoch: None,
        }
    }
}

impl From<TrainStateV2> for TrainStateV3 {
    fn from(v: TrainStateV2) -> Self {
        Self {
            format_version: v.format_version,
            epochs_done: v.epochs_done,
            optimizer_steps: v.optimizer_steps,
            history: v.history.into_iter().map(EpochStatsV3::from).collect(),
            best_epoch: v.best_epoch,
            best_score: v.best_score,
            fingerprint: v.fingerprint,
            train_seconds: v.train_seconds,
            partial_epoch: v.partial_epoch.map(|p| PartialEpochState {
                epoch: p.epoch,
                batches_done: p.batches_done,
                loss_sum: p.loss_sum,
                accuracy_sum: p.accuracy_sum,
                // Not measured by format 2: the interrupted epoch's batches before the
                // resume count as zero entropy.
                routing_entropy_sum: 0.0,
                seconds: p.seconds,
            }),
        }
    }
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// The model at the end of the checkpoint's epoch.
    pub saved: SavedModel,
    /// The learner's state.
    pub state: LearnerState,
    /// The directory it was read from (`NAME` or the `NAME.old` fallback).
    pub dir: PathBuf,
}

impl TrainStateFile {
    /// The file layout of `state`, with the tensors that go to `optimizer.safetensors`.
    fn of(state: &LearnerState) -> (Self, HashMap<String, Tensor>) {
        let mut tensors = HashMap::new();
        for (g, opt) in state.optimizers.iter() {
            tensors.extend(opt.named_tensors(g.name()));
        }
        let partial_epoch = state.partial_epoch.as_ref().map(|p| {
            tensors.insert(PARTIAL_LEAVES.to_string(), p.epoch_start_leaves.clone());
            if let Some(tally) = &p.class_leaf_tally {
                tensors.insert(PARTIAL_CLASS_LEAF_TALLY.to_string(), tally.clone());
            }
            PartialEpochState {
                epoch: p.epoch,
                batches_done: p.batches_done,
                loss_sum: p.loss_sum,
                accuracy_sum: p.accuracy_sum,
                routing_entropy_sum: p.routing_entropy_sum,
                seconds: p.seconds,
            }
        });
        let file = Self {
            format_version: CHECKPOINT_VERSION,
            epochs_done: state.epochs_done,
            optimizer_steps: state.optimizers.clone().map(|_, o| o.step).into_array(),
            history: state.history.clone(),
            best_epoch: state.best_epoch,
            best_score: state.best_score,
            fingerprint: state.fingerprint.clone(),
            train_seconds: state.train_seconds,
            partial_epoch,
        };
        (file, tensors)
    }

    /// The learner state of this file and the tensors of `optimizer.safetensors` at `opt_path`.
    fn into_state(
        self,
        tensors: &HashMap<String, Tensor>,
        opt_path: &Path,
    ) -> Result<LearnerState> {
        let steps = GroupMap::from_array(self.optimizer_steps);
        let optimizers = GroupMap::from_fn(|g: ParamGroup| {
            AdamState::from_named_tensors(g.name(), tensors, steps[g])
        });
        let partial_epoch = match self.partial_epoch {
            None => None,
            Some(p) => {
                let leaves = tensors.get(PARTIAL_LEAVES).ok_or_else(|| {
                    bad_file(
                        opt_path.to_path_buf(),
                        format!(
                            "the interrupted epoch {} has no `{PARTIAL_LEAVES}` tensor",
                            p.epoch
                        ),
                    )
                })?;
                Some(PartialEpoch {
                    epoch: p.epoch,
                    batches_done: p.batches_done,
                    loss_sum: p.loss_sum,
                    accuracy_sum: p.accuracy_sum,
                    routing_entropy_sum: p.routing_entropy_sum,
                    seconds: p.seconds,
                    epoch_start_leaves: leaves.clone(),
                    class_leaf_tally: tensors.get(PARTIAL_CLASS_LEAF_TALLY).cloned(),
                })
            }
        };
        Ok(LearnerState {
            epochs_done: self.epochs_done,
            partial_epoch,
            optimizers,
            history: self.history,
            best_epoch: self.best_epoch,
            best_score: self.best_score,
            fingerprint: self.fingerprint,
            train_seconds: self.train_seconds,
        })
    }
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    dir.with_file_name(name)
}

/// Writes a checkpoint of `model` and the learner's `state` into directory `dir`,
/// replacing any previous checkpoint there as a whole (see the module docs).
pub fn save_checkpoint(
    dir: &Path,
    model: &ProtoTree,
    meta: &ModelMeta,
    state: &LearnerState,
) -> Result<()> {
    let tmp = sibling(dir, ".tmp");
    let old = sibling(dir, ".old");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    save_model(&tmp, model, meta, &[])?;
    let (state, tensors) = TrainStateFile::of(state);
    let opt_path = tmp.join(OPTIMIZER_FILE);
    candle_core::safetensors::save(&tensors, &opt_path)?;
    let bytes = bincode::serde::encode_to_vec(&state, bincode::config::standard())
        .map_err(|e| bad_file(tmp.join(TRAIN_STATE_FILE), e.to_string()))?;
    write_atomic(&tmp.join(TRAIN_STATE_FILE), &bytes)?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        std::fs::rename(dir, &old).map_err(io_err(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io_err(dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }
    Ok(())
}

/// Whether a checkpoint exists at `dir` (or its `.old` fallback).
pub fn checkpoint_exists(dir: &Path) -> bool {
    dir.join(TRAIN_STATE_FILE).is_file() || sibling(dir, ".old").join(TRAIN_STATE_FILE).is_file()
}

/// Decodes `train_state.bin` of any supported format version (1 to 4); `path` names the
/// file in errors.
fn decode_train_state(bytes: &[u8], path: &Path) -> Result<TrainStateFile> {
    let config = bincode::config::standard().with_limit::<STATE_FILE_LIMIT>();
    let corrupt = |e: bincode::error::DecodeError| {
        bad_file(path.to_path_buf(), format!("corrupt or truncated: {e}"))
    };
    // The version is the first field of every format.
    let (version, _): (u32, usize) =
        bincode::serde::decode_from_slice(bytes, config).map_err(corrupt)?;
    if version > CHECKPOINT_VERSION {
        return Err(prototree_tree::Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: CHECKPOINT_VERSION,
        }
        .into());
    }
    if version == 1 {
        let (v1, _): (TrainStateV1, usize) =
            bincode::serde::decode_from_slice(bytes, config).map_err(corrupt)?;
        return Ok(TrainStateV3::from(TrainStateV2::from(v1)).into());
    }
    if version == 2 {
        let (v2, _): (TrainStateV2, usize) =
            bincode::serde::decode_from_slice(bytes, config).map_err(corrupt)?;
        return Ok(TrainStateV3::from(v2).into());
    }
    if version == 3 {
        let (v3, _): (TrainStateV3, usize) =
            bincode::serde::decode_from_slice(bytes, config).map_err(corrupt)?;
        return Ok(v3.into());
    }
    let (state, _): (TrainStateFile, usize) =
        bincode::serde::decode_from_slice(bytes, config).map_err(corrupt)?;
    Ok(state)
}

fn load_from(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let saved = load_model(dir, device)?;
    let state_path = dir.join(TRAIN_STATE_FILE);
    let bytes = prototree_limits::read_bounded(&state_path, STATE_FILE_LIMIT as u64).map_err(
        |e| match e {
            prototree_limits::Error::Io { source, .. } => io_err(&state_path)(source),
            prototree_limits::Error::Limit(l) => bad_file(
                state_path.clone(),
                prototree_limits::LimitError {
                    file: String::new(),
                    ..l
                }
                .to_string(),
            ),
        },
    )?;
    let file = decode_train_state(&bytes, &state_path)?;
    let opt_path = dir.join(OPTIMIZER_FILE);
    let tensors = candle_core::safetensors::load(&opt_path, device)
        .map_err(|e| bad_file(opt_path.clone(), format!("corrupt or truncated: {e}")))?;
    Ok(Checkpoint {
        saved,
        state: file.into_state(&tensors, &opt_path)?,
        dir: dir.to_path_buf(),
    })
}

/// Loads the checkpoint in `dir`, or its `.old` fallback when `dir` is missing or
/// incomplete (a save was interrupted). The error of `dir` is returned when neither loads.
pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<Checkpoint> {
    match load_from(dir, device) {
        Ok(c) => Ok(c),
        Err(e) => {
            let old = sibling(dir, ".old");
            if old.join(TRAIN_STATE_FILE).is_file() {
                load_from(&old, device).map_err(|_| e)
            } else {
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(version: u32, partial: Option<PartialEpochState>) -> TrainStateFile {
        TrainStateFile {
            format_version: version,
            epochs_done: 3,
            optimizer_steps: [1, 2, 3],
            history: Vec::new(),
            best_epoch: Some(2),
            best_score: 0.75,
            fingerprint: "run".into(),
            train_seconds: 12.5,
            partial_epoch: partial,
        }
    }

    fn old_epoch(epoch: usize) -> EpochStatsV2 {
        EpochStatsV2 {
            epoch,
            train_loss: 1.5,
            train_accuracy: 0.5,
            eval: None,
            learning_rates: [1e-3, 1e-3, 1e-3],
            backbone_frozen: false,
            seconds: 2.0,
        }
    }

    #[test]
    fn train_state_formats_1_to_4_decode_and_newer_ones_are_refused() -> anyhow::Result<()> {
        let cfg = bincode::config::standard();
        let path = Path::new("train_state.bin");
        let migrated_history = vec![EpochStats::from(EpochStatsV3::from(old_epoch(1)))];
        assert_eq!(migrated_history[0].leaf_sharing, None);
        let v1 = TrainStateV1 {
            format_version: 1,
            epochs_done: 3,
            optimizer_steps: [1, 2, 3],
            history: vec![old_epoch(1)],
            best_epoch: Some(2),
            best_score: 0.75,
            fingerprint: "run".into(),
            train_seconds: 12.5,
        };
        let bytes = bincode::serde::encode_to_vec(&v1, cfg)?;
        let want = TrainStateFile {
            history: migrated_history.clone(),
            ..state(1, None)
        };
        assert_eq!(decode_train_state(&bytes, path)?, want);

        let v2 = TrainStateV2 {
            format_version: 2,
            partial_epoch: Some(PartialEpochStateV2 {
                epoch: 4,
                batches_done: 7,
                loss_sum: 3.5,
                accuracy_sum: 2.0,
                seconds: 1.25,
            }),
            ..TrainStateV2::from(v1)
        };
        let bytes = bincode::serde::encode_to_vec(&v2, cfg)?;
        let partial = PartialEpochState {
            epoch: 4,
            batches_done: 7,
            loss_sum: 3.5,
            accuracy_sum: 2.0,
            routing_entropy_sum: 0.0,
            seconds: 1.25,
        };
        let want = TrainStateFile {
            history: migrated_history,
            ..state(2, Some(partial.clone()))
        };
        assert_eq!(decode_train_state(&bytes, path)?, want);

        let partial3 = PartialEpochState {
            routing_entropy_sum: 4.5,
            ..partial
        };
        let tree = prototree_tree::testing::small_cnn_tree(2, 4, 3, 0)?;
        let sharing = prototree_tree::LeafSharing::of(&tree, Some(1.25))?;
        let v3 = TrainStateV3 {
            format_version: 3,
            epochs_done: 3,
            optimizer_steps: [1, 2, 3],
            history: vec![EpochStatsV3 {
                base: old_epoch(1),
                leaf_sharing: Some(LeafSharingV3 {
                    leaves: sharing.leaves.clone(),
                    classes_without_leaf: sharing.classes_without_leaf.clone(),
                    shared_leaves: sharing.shared_leaves,
                    routing_entropy: sharing.routing_entropy,
                }),
            }],
            best_epoch: Some(2),
            best_score: 0.75,
            fingerprint: "run".into(),
            train_seconds: 12.5,
            partial_epoch: Some(partial3.clone()),
        };
        // Format 2's fields nested in format 3's write the bytes of the flat layout.
        let e = &v3.history[0];
        let b = &e.base;
        let flat = (
            b.epoch,
            b.train_loss,
            b.train_accuracy,
            &b.eval,
            b.learning_rates,
            b.backbone_frozen,
            b.seconds,
            &e.leaf_sharing,
        );
        assert_eq!(
            bincode::serde::encode_to_vec(e, cfg)?,
            bincode::serde::encode_to_vec(flat, cfg)?
        );
        let mut epoch = EpochStats::from(EpochStatsV3::from(old_epoch(1)));
        epoch.leaf_sharing = Some(sharing);
        let mut want = state(3, Some(partial3.clone()));
        want.history.push(epoch.clone());
        let bytes = bincode::serde::encode_to_vec(&v3, cfg)?;
        assert_eq!(decode_train_state(&bytes, path)?, want);

        let mut v4 = state(4, Some(partial3));
        if let Some(s) = epoch.leaf_sharing.as_mut() {
            s.misrouted_classes = vec![2];
        }
        epoch.leaf_reseeds = vec![prototree_tree::LeafReseed {
            leaf: 1,
            class: 2,
            previous_class: Some(0),
            from_leaf: None,
            rerouted_nodes: Vec::new(),
        }];
        v4.history.push(epoch);
        let bytes = bincode::serde::encode_to_vec(&v4, cfg)?;
        assert_eq!(decode_train_state(&bytes, path)?, v4);
        // Truncated: a clear error, never a panic.
        let err = decode_train_state(&bytes[..bytes.len() - 3], path).unwrap_err();
        assert!(err.to_string().contains("corrupt or truncated"), "{err}");

        let v9 = state(9, None);
        let bytes = bincode::serde::encode_to_vec(&v9, cfg)?;
        assert!(matches!(
            decode_train_state(&bytes, path),
            Err(crate::Error::Tree(
                prototree_tree::Error::UnsupportedVersion { found: 9, .. }
            ))
        ));
        Ok(())
    }
}
