//! The training loop: Adam on backbone / add-on / prototypes in separate parameter
//! groups, derivative-free leaf updates, backbone freezing and milestone decay
//! (spec §2). Progress reaches the caller through a [`TrainObserver`].

use std::time::Instant;

use candle_core::{DType, Tensor};

use crate::adam::Adam;
use crate::inference::{decide, leaf_top_classes, EvalAccumulator, EvalReport};
use crate::init::{ADD_ON_WEIGHT, BACKBONE_PREFIX, PROTOTYPES};
use crate::loss::{nll_loss, nll_per_image};
use crate::model::ProtoTree;
use crate::train_config::ValidTrainConfig;
use crate::{Error, Result};

/// A batch of normalised images and their labels.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `(b, 3, h, w)` f32 images on the model's device.
    pub images: Tensor,
    /// `(b,)` u32 class indices.
    pub labels: Tensor,
}

/// Something that yields batches, one pass per epoch.
pub trait BatchSource {
    /// Batches per pass.
    fn num_batches(&self) -> usize;
    /// The batches of one pass; `epoch` (1-based) seeds shuffling and augmentation.
    fn batches(&mut self, epoch: usize) -> Box<dyn Iterator<Item = Result<Batch>> + '_>;
}

/// Statistics of one training batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchStats {
    /// 1-based epoch.
    pub epoch: usize,
    /// 0-based batch index.
    pub batch: usize,
    /// Mean NLL of the batch.
    pub loss: f32,
    /// Soft accuracy on the batch.
    pub accuracy: f32,
}

/// Statistics of one epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochStats {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Mean of per-batch training accuracies (as the reference reports it).
    pub train_accuracy: f64,
    /// Evaluation on held-out data, when given.
    pub eval: Option<EvalReport>,
    /// Learning rates `(backbone, block, prototypes)` used in the epoch.
    pub learning_rates: [f64; 3],
    /// Whether the backbone was frozen.
    pub backbone_frozen: bool,
    /// Wall-clock seconds of the epoch (training + evaluation).
    pub seconds: f64,
}

/// Receives training progress. Every method has a no-op default.
pub trait TrainObserver {
    /// An epoch starts.
    fn epoch_started(&mut self, _epoch: usize, _num_epochs: usize, _num_batches: usize) {}
    /// A batch was trained.
    fn batch_finished(&mut self, _stats: &BatchStats) {}
    /// Evaluation of the epoch starts.
    fn evaluation_started(&mut self, _num_batches: usize) {}
    /// An evaluation batch was processed.
    fn evaluation_batch(&mut self) {}
    /// An epoch ended.
    fn epoch_finished(&mut self, _stats: &EpochStats) {}
    /// Polled between batches: return true to stop training with [`Error::Interrupted`].
    fn should_stop(&self) -> bool {
        false
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;
impl TrainObserver for NoObserver {}

/// Which parameter group a state-dict name belongs to.
fn group_of(name: &str, last_block: &[String]) -> Option<usize> {
    if name.ends_with("running_mean")
        || name.ends_with("running_var")
        || name.ends_with("num_batches_tracked")
    {
        return None;
    }
    if name == PROTOTYPES {
        return Some(2);
    }
    if name.starts_with("_add_on.") || name == ADD_ON_WEIGHT {
        return Some(1);
    }
    let rest = name.strip_prefix(BACKBONE_PREFIX)?.strip_prefix('.')?;
    if last_block
        .iter()
        .any(|p| rest == p || rest.starts_with(&format!("{p}.")))
    {
        Some(1)
    } else {
        Some(0)
    }
}

/// Names of the parameter groups, in optimiser order.
pub const GROUP_NAMES: [&str; 3] = ["backbone", "block", "prototypes"];

/// Where an interrupted epoch stopped: everything needed to continue it exactly as an
/// uninterrupted run would have (the model and optimisers hold the rest).
#[derive(Debug, Clone)]
pub struct PartialEpoch {
    /// 1-based epoch that was interrupted.
    pub epoch: usize,
    /// Batches of that epoch already trained.
    pub batches_done: usize,
    /// Sum of their losses.
    pub loss_sum: f64,
    /// Sum of their accuracies.
    pub accuracy_sum: f64,
    /// Seconds spent on them.
    pub seconds: f64,
    /// The leaf parameters at the start of the epoch (the derivative-free update
    /// subtracts a share of them at every batch).
    pub epoch_start_leaves: Tensor,
}

/// Trains a [`ProtoTree`] with the reference's schedule.
#[derive(Debug)]
pub struct Trainer {
    config: ValidTrainConfig,
    /// Optimisers of the groups backbone, block (add-on + last backbone block), prototypes.
    groups: [Adam; 3],
    epochs_done: usize,
    /// Set when an epoch was interrupted; the next [`Trainer::train_epoch`] continues it.
    partial: Option<PartialEpoch>,
}

impl Trainer {
    /// A trainer for `model`: one Adam per parameter group.
    pub fn new(config: &ValidTrainConfig, model: &ProtoTree) -> Result<Self> {
        let last_block = model.backbone().last_block_prefixes();
        let mut named: [Vec<(String, candle_core::Var)>; 3] = Default::default();
        {
            let data = model
                .varmap()
                .data()
                .lock()
                .map_err(|_| Error::Data("parameter map lock poisoned".into()))?;
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            for name in names {
                if let (Some(g), Some(var)) = (group_of(name, &last_block), data.get(name)) {
                    named[g].push((name.clone(), var.clone()));
                }
            }
        }
        let adam = config.adam();
        let [a, b, c] = named;
        Ok(Self {
            config: config.clone(),
            groups: [Adam::new(a, adam), Adam::new(b, adam), Adam::new(c, adam)],
            epochs_done: 0,
            partial: None,
        })
    }

    /// The schedule.
    pub fn config(&self) -> &ValidTrainConfig {
        &self.config
    }

    /// Epochs completed so far.
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    /// The optimisers (backbone, block, prototypes), for checkpointing.
    pub fn optimizers(&self) -> &[Adam; 3] {
        &self.groups
    }

    /// Mutable optimisers, for restoring a checkpoint.
    pub fn optimizers_mut(&mut self) -> &mut [Adam; 3] {
        &mut self.groups
    }

    /// Sets the number of completed epochs (resuming).
    pub fn set_epochs_done(&mut self, epochs: usize) {
        self.epochs_done = epochs;
    }

    /// The interrupted epoch that the next [`Trainer::train_epoch`] will continue, if any.
    pub fn partial_epoch(&self) -> Option<&PartialEpoch> {
        self.partial.as_ref()
    }

    /// Sets (resuming) or clears the interrupted epoch to continue.
    pub fn set_partial_epoch(&mut self, partial: Option<PartialEpoch>) {
        self.partial = partial;
    }

    /// Learning rates `(backbone, block, prototypes)` during 1-based `epoch`.
    pub fn learning_rates(&self, epoch: usize) -> [f64; 3] {
        let c = self.config.config();
        let f = self.config.lr_factor(epoch);
        [c.lr_net * f, c.lr_block * f, c.lr * f]
    }

    /// Trains one epoch (the next one) on `source`, then evaluates on `eval` if given.
    ///
    /// When the observer asks to stop, the batches trained so far are kept as a
    /// [`PartialEpoch`] ([`Trainer::partial_epoch`], saved with checkpoints) and
    /// [`Error::Interrupted`] is returned; the next call continues the epoch at the next
    /// batch, with the same result as an uninterrupted epoch (batches are drawn from
    /// `(seed, epoch)`, so the skipped ones are the ones already trained).
    pub fn train_epoch(
        &mut self,
        model: &mut ProtoTree,
        source: &mut dyn BatchSource,
        eval: Option<&mut dyn BatchSource>,
        observer: &mut dyn TrainObserver,
    ) -> Result<EpochStats> {
        let start = Instant::now();
        let epoch = self.epochs_done + 1;
        let num_epochs = self.config.config().epochs;
        let num_batches = source.num_batches();
        if num_batches == 0 {
            return Err(Error::EmptyData("training"));
        }
        let lrs = self.learning_rates(epoch);
        let frozen = self.config.backbone_frozen(epoch);
        // When the whole backbone is frozen (no last block trains with the add-on), its
        // backward pass is skipped entirely.
        let detach_backbone = frozen && model.backbone().last_block_prefixes().is_empty();
        observer.epoch_started(epoch, num_epochs, num_batches);
        let resumed = self
            .partial
            .take()
            .filter(|p| p.epoch == epoch && p.batches_done < num_batches);
        let (epoch_start_leaves, mut loss_sum, mut acc_sum, skip, seconds_before) = match resumed {
            Some(p) => (
                p.epoch_start_leaves,
                p.loss_sum,
                p.accuracy_sum,
                p.batches_done,
                p.seconds,
            ),
            None => (model.leaves().params().clone(), 0f64, 0f64, 0usize, 0f64),
        };
        let k = model.num_classes();
        let mut seen = skip;
        for (index, batch) in source.batches(epoch).enumerate().skip(skip) {
            if observer.should_stop() {
                if index > 0 {
                    self.partial = Some(PartialEpoch {
                        epoch,
                        batches_done: index,
                        loss_sum,
                        accuracy_sum: acc_sum,
                        seconds: seconds_before + start.elapsed().as_secs_f64(),
                        epoch_start_leaves,
                    });
                }
                return Err(Error::Interrupted);
            }
            let batch = batch?;
            let labels = batch.labels.to_dtype(DType::U32)?;
            let latent = model.latent_with(&batch.images, true, detach_backbone)?;
            let out = model.forward_latent(&latent)?;
            let loss = nll_loss(&out.probabilities, &labels)?;
            let loss_value = loss.to_scalar::<f32>()?;
            if !loss_value.is_finite() {
                return Err(Error::NonFiniteLoss {
                    epoch,
                    batch: index,
                    loss: loss_value,
                });
            }
            let grads = loss.backward()?;
            let stepped = if frozen { 1 } else { 0 };
            for (g, opt) in self.groups.iter().enumerate().skip(stepped) {
                if let Some(parameter) = opt.non_finite_gradient(&grads)? {
                    return Err(Error::NonFiniteGradient {
                        epoch,
                        batch: index,
                        group: GROUP_NAMES[g],
                        parameter,
                    });
                }
            }
            for (g, opt) in self.groups.iter_mut().enumerate().skip(stepped) {
                opt.step(&grads, lrs[g])?;
            }
            let one_hot = one_hot(&labels, k)?;
            model.leaves_mut().derivative_free_update(
                &out.leaf_path_probs,
                &out.probabilities,
                &one_hot,
                &epoch_start_leaves,
                num_batches,
            )?;
            let predicted = out.probabilities.argmax(1)?;
            let correct = predicted
                .eq(&labels)?
                .to_dtype(DType::F32)?
                .mean_all()?
                .to_scalar::<f32>()?;
            loss_sum += f64::from(loss_value);
            acc_sum += f64::from(correct);
            seen += 1;
            observer.batch_finished(&BatchStats {
                epoch,
                batch: index,
                loss: loss_value,
                accuracy: correct,
            });
        }
        if seen == 0 {
            return Err(Error::EmptyData("training"));
        }
        let eval = match eval {
            Some(src) => Some(evaluate(model, src, observer)?),
            None => None,
        };
        self.epochs_done = epoch;
        let stats = EpochStats {
            epoch,
            train_loss: loss_sum / seen as f64,
            train_accuracy: acc_sum / seen as f64,
            eval,
            learning_rates: lrs,
            backbone_frozen: frozen,
            seconds: seconds_before + start.elapsed().as_secs_f64(),
        };
        observer.epoch_finished(&stats);
        Ok(stats)
    }

    /// Trains the remaining epochs of the schedule, evaluating after each when `eval` is
    /// given. Returns the statistics of the epochs trained by this call.
    pub fn fit(
        &mut self,
        model: &mut ProtoTree,
        source: &mut dyn BatchSource,
        mut eval: Option<&mut dyn BatchSource>,
        observer: &mut dyn TrainObserver,
    ) -> Result<Vec<EpochStats>> {
        let mut all = Vec::new();
        while self.epochs_done < self.config.config().epochs {
            let eval_now: Option<&mut dyn BatchSource> = match eval {
                Some(ref mut e) => Some(&mut **e),
                None => None,
            };
            let stats = self.train_epoch(model, source, eval_now, observer)?;
            all.push(stats);
        }
        Ok(all)
    }
}

/// One-hot encoding `(b, k)` of u32 labels `(b,)`, checking the range.
pub fn one_hot(labels: &Tensor, num_classes: usize) -> Result<Tensor> {
    let values = labels.to_vec1::<u32>()?;
    let mut data = vec![0f32; values.len() * num_classes];
    for (i, &y) in values.iter().enumerate() {
        if y as usize >= num_classes {
            return Err(Error::LabelOutOfRange {
                label: y,
                num_classes,
            });
        }
        data[i * num_classes + y as usize] = 1.0;
    }
    Ok(Tensor::from_vec(
        data,
        (values.len(), num_classes),
        labels.device(),
    )?)
}

/// Evaluates soft, greedy and max-leaf routing, fidelity and loss over `source`.
pub fn evaluate(
    model: &ProtoTree,
    source: &mut dyn BatchSource,
    observer: &mut dyn TrainObserver,
) -> Result<EvalReport> {
    let k = model.num_classes();
    let leaf_classes = leaf_top_classes(&model.leaves().distributions()?)?;
    let mut acc = EvalAccumulator::new(k);
    observer.evaluation_started(source.num_batches());
    for batch in source.batches(0) {
        let batch = batch?;
        let labels = batch.labels.to_dtype(DType::U32)?;
        let label_values = labels.to_vec1::<u32>()?;
        if let Some(bad) = label_values.iter().find(|y| **y as usize >= k) {
            return Err(Error::LabelOutOfRange {
                label: *bad,
                num_classes: k,
            });
        }
        let out = model.forward(&batch.images, false)?;
        let loss_sum = nll_per_image(&out.probabilities, &labels)?
            .sum_all()?
            .to_scalar::<f32>()?;
        let decisions = decide(model.topology(), &out, &leaf_classes)?;
        acc.add(&decisions, &label_values, f64::from(loss_sum));
        observer.evaluation_batch();
    }
    Ok(acc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_groups() {
        let lb = vec!["layer4.2".to_string()];
        assert_eq!(group_of("_net.conv1.weight", &lb), Some(0));
        assert_eq!(group_of("_net.layer4.2.conv1.weight", &lb), Some(1));
        assert_eq!(group_of("_net.layer4.20.conv1.weight", &lb), Some(0));
        assert_eq!(group_of("_net.bn1.running_mean", &lb), None);
        assert_eq!(group_of(ADD_ON_WEIGHT, &lb), Some(1));
        assert_eq!(group_of(PROTOTYPES, &lb), Some(2));
    }
}
