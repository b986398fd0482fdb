//! Supervised backbone warm-up: before a from-scratch tree's first epoch, the backbone
//! trains for a few epochs as a plain classifier (global average pooling, a temporary
//! linear layer, cross-entropy), so that the tree starts on features that already tell
//! the classes apart. The linear layer is dropped afterwards; the tree's own epochs,
//! learning rates and optimiser moments start as they would without it.
//!
//! Why: a randomly initialised backbone trained only through the tree's routing learns
//! slowly, and while it does the tree can settle with classes sharing leaves (the stall of
//! docs/training.md). With the warm-up and prototypes from patches no run of the demo
//! set's stall sweep stalls (docs/results.md, "Training that lands"); the warm-up also
//! moves prototypes off the parts they should show, so the demo leaves it off
//! (docs/explanations.md, "The start of training").
//!
//! The warm-up is part of a new run only: [`crate::Learner::fit`] runs it before the first
//! epoch and then writes a checkpoint, so a run that has a checkpoint has finished its
//! warm-up. Interrupted during the warm-up, nothing is saved (it is short, and a restart
//! repeats it exactly: batches are drawn from `(seed, epoch)`).

use std::path::Path;
use std::time::Instant;

use candle_core::DType;
use prototree_tree::io::write_atomic;
pub use prototree_tree::WarmupEpoch;
use prototree_tree::{BatchSource, Observer, ProtoTree, Stage, ValidTrainConfig};

use crate::adam::{Adam, AdamConfig, AdamState};
use crate::error::finite_loss;
use crate::interrupt::Interrupter;
use crate::json_lines;
use crate::linear_head::{accuracy, cross_entropy, LinearHead};
use crate::param_group::partition;
use crate::{Error, Result};

/// File of the run directory holding the warm-up's epochs (one JSON object per line).
pub const WARMUP_FILE: &str = "warmup.jsonl";

/// Largest warm-up log read (a line per epoch, about 150 bytes each).
const MAX_WARMUP_LOG_BYTES: u64 = 64 << 20;

/// Name of the temporary classifier (its weight is drawn from the seed and this name).
const HEAD: &str = "warmup.fc";

/// Trains `model`'s backbone with a temporary linear classifier for the schedule's
/// `backbone_warmup_epochs` on `source` (batches of epochs `1..=n`), at the backbone's
/// learning rate `lr_net` with the schedule's Adam settings, and returns the epochs'
/// statistics. Progress: [`Stage::WarmUp`] over the batches of all warm-up epochs, and
/// one message per epoch. Stops with [`Error::Interrupted`] when `interrupter` is
/// stopped (between batches).
pub fn warm_up_backbone(
    model: &ProtoTree,
    schedule: &ValidTrainConfig,
    source: &mut dyn BatchSource,
    interrupter: &Interrupter,
    observer: &mut dyn Observer,
) -> Result<Vec<WarmupEpoch>> {
    let config = schedule.config();
    let num_epochs = config.backbone_warmup_epochs;
    if num_epochs == 0 {
        return Ok(Vec::new());
    }
    let num_batches = source.num_batches();
    if num_batches == 0 {
        return Err(Error::EmptyData("training"));
    }
    let channels = model.backbone().out_channels();
    let head = LinearHead::new(
        model.num_classes(),
        channels,
        config.seed,
        HEAD,
        model.device(),
    )?;
    // The whole backbone, its last block included, plus the classifier.
    let [mut vars, _, _] = partition(model, false)?.into_array();
    vars.extend(head.named_vars());
    let optimizer = Adam::new(vars, AdamConfig::of_schedule(schedule));
    let mut state = AdamState::default();
    let lr = config.lr_net;
    observer.stage_started(Stage::WarmUp, num_epochs * num_batches);
    let mut epochs = Vec::with_capacity(num_epochs);
    let mut done = 0;
    for epoch in 1..=num_epochs {
        let start = Instant::now();
        let (mut loss_sum, mut accuracy_sum, mut batches) = (0f64, 0f64, 0usize);
        for (index, batch) in source.batches(epoch).enumerate() {
            if interrupter.is_stopped() {
                return Err(Error::Interrupted);
            }
            let batch = batch?;
            let labels = batch.labels.to_dtype(DType::U32)?;
            let features = model
                .backbone()
                .features(&batch.images, true)
                .map_err(prototree_tree::Error::from)?;
            let logits = head.logits(&features)?;
            let loss = cross_entropy(&logits, &labels)?;
            let loss_value = finite_loss(&loss, epoch, index)?;
            let grads = loss.backward()?;
            if let Some(parameter) = optimizer.non_finite_gradient(&grads)? {
                return Err(Error::NonFiniteGradient {
                    epoch,
                    batch: index,
                    group: "backbone warm-up",
                    parameter,
                });
            }
            optimizer.step(&mut state, &grads, lr)?;
            let accuracy = accuracy(&logits, &labels)?;
            loss_sum += f64::from(loss_value);
            accuracy_sum += f64::from(accuracy);
            batches += 1;
            done += 1;
            observer.stage_progress(done);
        }
        if batches == 0 {
            return Err(Error::EmptyData("training"));
        }
        let stats = WarmupEpoch {
            epoch,
            num_epochs,
            loss: loss_sum / batches as f64,
            accuracy: accuracy_sum / batches as f64,
            learning_rate: lr,
            seconds: start.elapsed().as_secs_f64(),
        };
        observer.message(&format!(
            "backbone warm-up {epoch}/{num_epochs}: loss {:.4} train acc {:.3} ({:.1}s)",
            stats.loss, stats.accuracy, stats.seconds
        ));
        epochs.push(stats);
    }
    observer.stage_finished(Stage::WarmUp);
    Ok(epochs)
}

/// Writes `epochs` to `path` ([`WARMUP_FILE`] of a run directory), one JSON object per
/// line, atomically.
pub fn write_warmup_log(path: &Path, epochs: &[WarmupEpoch]) -> Result<()> {
    Ok(write_atomic(
        path,
        json_lines::text(epochs, path)?.as_bytes(),
    )?)
}

/// Reads a run's warm-up log ([`write_warmup_log`]); no file gives no epochs. A line
/// that does not read as an epoch is an error naming the file and the line.
pub fn read_warmup_log(path: &Path) -> Result<Vec<WarmupEpoch>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes =
        prototree_limits::read_bounded(path, MAX_WARMUP_LOG_BYTES).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
    json_lines::parse(&String::from_utf8_lossy(&bytes), path)
}
