//! The training loop (spec §2): Adam on the backbone / block / prototype groups,
//! derivative-free leaf updates, backbone freezing and milestone decay, evaluation
//! cadence, checkpoints (last + best), the metrics log and interrupts. One [`Learner`]
//! owns the model, the optimisers and the one [`LearnerState`]; build it with
//! [`Learner::builder`].

use std::time::Instant;

use candle_core::{DType, Tensor};
use prototree_tree::leaf_sharing::{routing_entropy, LeafSharing};
use prototree_tree::loss::nll_loss;
use prototree_tree::{
    evaluate, one_hot, BatchSource, BatchStats, EpochStats, Event, Observer, ProtoTree, Stage,
    ValidTrainConfig,
};

use crate::adam::Adam;
use crate::checkpointer::Checkpointer;
use crate::interrupt::Interrupter;
use crate::param_group::{block_prefixes, GroupMap, ParamGroup};
use crate::state::{LearnerState, PartialEpoch};
use crate::{Error, Result};

/// Trains one [`ProtoTree`] with the reference's schedule.
#[derive(Debug)]
pub struct Learner {
    pub(crate) model: ProtoTree,
    pub(crate) schedule: ValidTrainConfig,
    pub(crate) optimizers: GroupMap<Adam>,
    pub(crate) state: LearnerState,
    pub(crate) checkpointer: Option<Checkpointer>,
    pub(crate) eval_every: usize,
    pub(crate) interrupter: Interrupter,
}

/// Running sums of an epoch in progress.
struct EpochProgress {
    epoch_start_leaves: Tensor,
    loss_sum: f64,
    accuracy_sum: f64,
    routing_entropy_sum: f64,
    batches_done: usize,
    num_batches: usize,
    seconds_before: f64,
}

impl Learner {
    /// The model being trained.
    pub fn model(&self) -> &ProtoTree {
        &self.model
    }

    /// The trained model.
    pub fn into_model(self) -> ProtoTree {
        self.model
    }

    /// The model and the final state.
    pub fn into_parts(self) -> (ProtoTree, LearnerState) {
        (self.model, self.state)
    }

    /// The schedule.
    pub fn schedule(&self) -> &ValidTrainConfig {
        &self.schedule
    }

    /// The state (epochs done, optimiser moments, history, …).
    pub fn state(&self) -> &LearnerState {
        &self.state
    }

    /// The interrupt handle polled between batches.
    pub fn interrupter(&self) -> &Interrupter {
        &self.interrupter
    }

    /// Learning rates by group during 1-based `epoch`.
    pub fn learning_rates(&self, epoch: usize) -> GroupMap<f64> {
        let c = self.schedule.config();
        let f = self.schedule.lr_factor(epoch);
        GroupMap::from_array([c.lr_net * f, c.lr_block * f, c.lr * f])
    }

    /// The running sums of `epoch`: continued from an interrupted epoch, or fresh.
    fn epoch_progress(&mut self, epoch: usize, num_batches: usize) -> EpochProgress {
        let resumed = self
            .state
            .partial_epoch
            .take()
            .filter(|p| p.epoch == epoch && p.batches_done < num_batches);
        match resumed {
            Some(p) => EpochProgress {
                epoch_start_leaves: p.epoch_start_leaves,
                loss_sum: p.loss_sum,
                accuracy_sum: p.accuracy_sum,
                routing_entropy_sum: p.routing_entropy_sum,
                batches_done: p.batches_done,
                num_batches,
                seconds_before: p.seconds,
            },
            None => EpochProgress {
                epoch_start_leaves: self.model.leaves().params().clone(),
                loss_sum: 0.0,
                accuracy_sum: 0.0,
                routing_entropy_sum: 0.0,
                batches_done: 0,
                num_batches,
                seconds_before: 0.0,
            },
        }
    }

    /// Trains the next epoch on `source`, then evaluates on `eval` if given, and records
    /// the epoch in the state (epochs done, history, best score).
    ///
    /// When the [`Interrupter`] is stopped, the batches trained so far are kept in the
    /// state's [`PartialEpoch`] (saved with checkpoints) and [`Error::Interrupted`] is
    /// returned; the next call continues the epoch at the next batch, with the same result
    /// as an uninterrupted epoch (batches are drawn from `(seed, epoch)`, so the skipped
    /// ones are the ones already trained).
    pub fn train_epoch(
        &mut self,
        source: &mut dyn BatchSource,
        eval: Option<&mut dyn BatchSource>,
        observer: &mut dyn Observer,
    ) -> Result<EpochStats> {
        let start = Instant::now();
        let epoch = self.state.epochs_done + 1;
        let num_batches = source.num_batches();
        if num_batches == 0 {
            return Err(Error::EmptyData("training"));
        }
        let lrs = self.learning_rates(epoch);
        let frozen = self.schedule.backbone_frozen(epoch);
        // When the whole backbone is frozen (no last block trains with the add-on), its
        // backward pass is skipped entirely.
        let kind = self.model.config().backbone();
        let with_addon = self.schedule.config().last_block_with_addon_for(kind);
        let detach_backbone = frozen && block_prefixes(&self.model, with_addon).is_empty();
        observer.on_event(&Event::EpochStarted {
            epoch,
            num_epochs: self.schedule.config().epochs,
            num_batches,
        });
        let mut p = self.epoch_progress(epoch, num_batches);
        let skip = p.batches_done;
        for (index, batch) in source.batches(epoch).enumerate().skip(skip) {
            if self.interrupter.is_stopped() {
                if index > 0 {
                    self.state.partial_epoch = Some(PartialEpoch {
                        epoch,
                        batches_done: index,
                        loss_sum: p.loss_sum,
                        accuracy_sum: p.accuracy_sum,
                        routing_entropy_sum: p.routing_entropy_sum,
                        seconds: p.seconds_before + start.elapsed().as_secs_f64(),
                        epoch_start_leaves: p.epoch_start_leaves,
                    });
                }
                return Err(Error::Interrupted);
            }
            let batch = batch?;
            let stats =
                self.train_batch(&batch, epoch, index, frozen, detach_backbone, &lrs, &p)?;
            p.loss_sum += f64::from(stats.loss);
            p.accuracy_sum += f64::from(stats.accuracy);
            p.routing_entropy_sum += stats.routing_entropy;
            p.batches_done += 1;
            observer.on_event(&Event::BatchFinished(&stats));
        }
        if p.batches_done == 0 {
            return Err(Error::EmptyData("training"));
        }
        let eval = match eval {
            Some(src) => Some(evaluate(&self.model, src, observer)?),
            None => None,
        };
        let seen = p.batches_done as f64;
        let stats = EpochStats {
            epoch,
            train_loss: p.loss_sum / seen,
            train_accuracy: p.accuracy_sum / seen,
            eval,
            learning_rates: lrs.into_array(),
            backbone_frozen: frozen,
            seconds: p.seconds_before + start.elapsed().as_secs_f64(),
            leaf_sharing: Some(LeafSharing::of(
                &self.model,
                Some(p.routing_entropy_sum / seen),
            )?),
        };
        self.state.record(stats.clone());
        observer.on_event(&Event::EpochFinished(&stats));
        Ok(stats)
    }

    /// Refuses to go on (and so to checkpoint) when epoch `epoch` left any weight or
    /// running statistic NaN or infinite: a diverged BatchNorm variance can do so while
    /// the loss and the gradients are still finite.
    fn check_finite_weights(&self, epoch: usize) -> Result<()> {
        let kind = self.model.config().backbone();
        let with_addon = self.schedule.config().last_block_with_addon_for(kind);
        let last_block = block_prefixes(&self.model, with_addon);
        let data = self.model.varmap().data().lock().map_err(|_| {
            Error::Candle(candle_core::Error::Msg(
                "the variable map's lock is poisoned".into(),
            ))
        })?;
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let t = data[name].as_tensor();
            let finite = t
                .flatten_all()?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?
                .iter()
                .all(|v| v.is_finite());
            if !finite {
                return Err(Error::NonFiniteWeights {
                    epoch,
                    previous: epoch - 1,
                    group: ParamGroup::of(name, &last_block)
                        .map_or("running statistic", ParamGroup::name),
                    parameter: name.clone(),
                });
            }
        }
        Ok(())
    }

    /// One optimiser step and leaf update on `batch`.
    #[allow(clippy::too_many_arguments)]
    fn train_batch(
        &mut self,
        batch: &prototree_tree::Batch,
        epoch: usize,
        index: usize,
        frozen: bool,
        detach_backbone: bool,
        lrs: &GroupMap<f64>,
        p: &EpochProgress,
    ) -> Result<BatchStats> {
        let model = &mut self.model;
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
        let stepped = |g: ParamGroup| !(frozen && g == ParamGroup::Backbone);
        for (g, opt) in self.optimizers.iter().filter(|(g, _)| stepped(*g)) {
            if let Some(parameter) = opt.non_finite_gradient(&grads)? {
                return Err(Error::NonFiniteGradient {
                    epoch,
                    batch: index,
                    group: g.name(),
                    parameter,
                });
            }
        }
        for (g, opt) in self.optimizers.iter().filter(|(g, _)| stepped(*g)) {
            opt.step(&mut self.state.optimizers[g], &grads, lrs[g])?;
        }
        let one_hot = one_hot(&labels, model.num_classes())?;
        model.leaves_mut().derivative_free_update(
            &out.leaf_path_probs,
            &out.probabilities,
            &one_hot,
            &p.epoch_start_leaves,
            p.num_batches,
        )?;
        let accuracy = out
            .probabilities
            .argmax(1)?
            .eq(&labels)?
            .to_dtype(DType::F32)?
            .mean_all()?
            .to_scalar::<f32>()?;
        Ok(BatchStats {
            epoch,
            batch: index,
            loss: loss_value,
            accuracy,
            routing_entropy: routing_entropy(&out.leaf_path_probs)?,
        })
    }

    /// Whether `epoch` evaluates on the test data during training (every `eval_every`
    /// epochs, not the last: the caller evaluates the final model).
    fn evaluates(&self, epoch: usize) -> bool {
        self.eval_every > 0 && epoch % self.eval_every == 0 && epoch < self.schedule.config().epochs
    }

    /// Trains the remaining epochs of the schedule, evaluating on `test` at the cadence
    /// set by [`crate::LearnerBuilder::with_eval_every`], recording each epoch in the
    /// state, the metrics log and the checkpoints (last, and best when the score
    /// improved). On an interrupt the state so far is checkpointed and
    /// [`Error::Interrupted`] returned. Returns the statistics of the epochs trained by
    /// this call.
    pub fn fit(
        &mut self,
        train: &mut dyn BatchSource,
        mut test: Option<&mut dyn BatchSource>,
        observer: &mut dyn Observer,
    ) -> Result<Vec<EpochStats>> {
        let num_epochs = self.schedule.config().epochs;
        if let Some(c) = &self.checkpointer {
            c.metrics().rewrite(&self.state.history)?;
        }
        let start = Instant::now();
        let seconds_before = self.state.train_seconds;
        observer.on_event(&Event::StageStarted {
            stage: Stage::Train,
            total: num_epochs,
        });
        observer.on_event(&Event::StageProgress {
            done: self.state.epochs_done,
        });
        let mut trained = Vec::new();
        while self.state.epochs_done < num_epochs {
            let epoch = self.state.epochs_done + 1;
            let eval: Option<&mut dyn BatchSource> = match test.as_mut() {
                Some(t) if self.evaluates(epoch) => Some(&mut **t),
                _ => None,
            };
            let result = self.train_epoch(train, eval, observer);
            self.state.train_seconds = seconds_before + start.elapsed().as_secs_f64();
            let stats = match result {
                Ok(stats) => stats,
                Err(Error::Interrupted) => {
                    // Keep the batches of the interrupted epoch: resuming continues it.
                    if let (Some(c), Some(_)) = (&self.checkpointer, &self.state.partial_epoch) {
                        c.save_last(&self.model, &self.state)?;
                    }
                    return Err(Error::Interrupted);
                }
                Err(e) => return Err(e),
            };
            if let Some(c) = &self.checkpointer {
                c.metrics().append(&stats)?;
            }
            let improved = self.state.best_epoch == Some(epoch);
            self.state.train_seconds = seconds_before + start.elapsed().as_secs_f64();
            self.check_finite_weights(epoch)?;
            if let Some(c) = &self.checkpointer {
                c.save(&self.model, &self.state, improved)?;
            }
            observer.on_event(&Event::StageProgress { done: epoch });
            trained.push(stats);
        }
        observer.on_event(&Event::StageFinished(Stage::Train));
        Ok(trained)
    }
}
