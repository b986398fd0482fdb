//! The training loop (spec §2): Adam on the backbone / block / prototype groups,
//! derivative-free leaf updates, backbone freezing and milestone decay, evaluation
//! cadence, checkpoints (last + best), the metrics log and interrupts. One [`Learner`]
//! owns the model, the optimisers and the one [`LearnerState`]; build it with
//! [`Learner::builder`].

use std::time::Instant;

use crate::input_noise::{noise_seed, with_input_noise};
use candle_core::{DType, Tensor};
use prototree_tree::flip_alignment::{flip_alignment, with_mirrors};
use prototree_tree::init::PROTOTYPES;
use prototree_tree::leaf_reseed::{common_depth, persistently_needing, ReseedHistory};
use prototree_tree::leaf_sharing::{routing_entropy, LeafSharing};
use prototree_tree::loss::nll_loss;
use prototree_tree::prototype_init::prototypes_from_patches;
use prototree_tree::route_keeping::plan_route_keeping_traffic;
use prototree_tree::route_repair::{path_to_leaf, plan_route, ClassPatches};
use prototree_tree::{
    evaluate, model::Latent, one_hot, BatchSource, BatchStats, EpochStats, Event, Observer,
    ProtoTree, Stage, ValidTrainConfig,
};
use prototree_tree::{plan_reseeds, ClassLeafTally, LeafReseed};

/// Images of a re-seeded class sampled for its route ([`Learner::repair_routes`]).
const ROUTE_TARGET_IMAGES: usize = 16;
/// Images of the other classes sampled together (spread over them, 1 to 8 each).
const ROUTE_OTHER_IMAGES: usize = 96;

use crate::adam::Adam;
use crate::checkpointer::Checkpointer;
use crate::error::finite_loss;
use crate::interrupt::Interrupter;
use crate::param_group::{block_prefixes, GroupMap, ParamGroup};
use crate::state::{LearnerState, PartialEpoch};
use crate::warmup::{warm_up_backbone, write_warmup_log, WarmupEpoch, WARMUP_FILE};
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
    /// Whether [`Learner::fit`] still has to start a new run (backbone warm-up,
    /// prototypes from patches) that the schedule asks for; never for a resumed run.
    pub(crate) start_pending: bool,
    /// The warm-up epochs this learner ran.
    pub(crate) warmup: Vec<WarmupEpoch>,
}

/// Running sums of an epoch in progress.
struct EpochProgress {
    epoch_start_leaves: Tensor,
    loss_sum: f64,
    accuracy_sum: f64,
    routing_entropy_sum: f64,
    /// Where the images of each class went, `(2, leaves, classes)`
    /// ([`prototree_tree::ClassLeafTally`]; `None` when an epoch interrupted by an older
    /// build is continued).
    class_leaf_tally: Option<Tensor>,
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

    /// The backbone warm-up epochs this learner ran (none for a resumed run, whose
    /// warm-up, if any, is in its run directory's [`WARMUP_FILE`]).
    pub fn warmup(&self) -> &[WarmupEpoch] {
        &self.warmup
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
    fn epoch_progress(&mut self, epoch: usize, num_batches: usize) -> Result<EpochProgress> {
        let resumed = self
            .state
            .partial_epoch
            .take()
            .filter(|p| p.epoch == epoch && p.batches_done < num_batches);
        Ok(match resumed {
            Some(p) => EpochProgress {
                epoch_start_leaves: p.epoch_start_leaves,
                loss_sum: p.loss_sum,
                accuracy_sum: p.accuracy_sum,
                routing_entropy_sum: p.routing_entropy_sum,
                // A checkpoint without it (older builds): not measured this epoch.
                class_leaf_tally: p.class_leaf_tally,
                batches_done: p.batches_done,
                num_batches,
                seconds_before: p.seconds,
            },
            None => {
                let leaves = self.model.leaves().params();
                EpochProgress {
                    epoch_start_leaves: leaves.clone(),
                    loss_sum: 0.0,
                    accuracy_sum: 0.0,
                    routing_entropy_sum: 0.0,
                    class_leaf_tally: Some(Tensor::zeros(
                        (2, leaves.dim(0)?, leaves.dim(1)?),
                        DType::F32,
                        leaves.device(),
                    )?),
                    batches_done: 0,
                    num_batches,
                    seconds_before: 0.0,
                }
            }
        })
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
        let mut p = self.epoch_progress(epoch, num_batches)?;
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
                        class_leaf_tally: p.class_leaf_tally,
                    });
                }
                return Err(Error::Interrupted);
            }
            let batch = batch?;
            let stats =
                self.train_batch(&batch, epoch, index, frozen, detach_backbone, &lrs, &mut p)?;
            p.loss_sum += f64::from(stats.loss);
            p.accuracy_sum += f64::from(stats.accuracy);
            p.routing_entropy_sum += stats.routing_entropy;
            p.batches_done += 1;
            observer.on_event(&Event::BatchFinished(&stats));
        }
        if p.batches_done == 0 {
            return Err(Error::EmptyData("training"));
        }
        let seen = p.batches_done as f64;
        let mut leaf_sharing = LeafSharing::of(&self.model, Some(p.routing_entropy_sum / seen))?;
        let tally = match &p.class_leaf_tally {
            Some(t) => Some(ClassLeafTally::from_tensor(t)?),
            None => None,
        };
        if let Some(tally) = &tally {
            leaf_sharing.measure_misrouting(&tally.counts);
        }
        let previous: Vec<ReseedHistory> = self
            .state
            .history
            .iter()
            .map(|e| ReseedHistory {
                needing: e
                    .leaf_sharing
                    .as_ref()
                    .map(LeafSharing::classes_needing_a_leaf)
                    .unwrap_or_default(),
                reseeded: e.leaf_reseeds.iter().map(|r| r.class).collect(),
            })
            .collect();
        let needing = persistently_needing(&previous, &leaf_sharing.classes_needing_a_leaf());
        let mut leaf_reseeds = match &tally {
            Some(tally) if self.schedule.reseeds_leaves_after(epoch) && !needing.is_empty() => {
                self.reseed_leaves(tally, &needing)?
            }
            _ => Vec::new(),
        };
        if let (Some(tally), false) = (&tally, leaf_reseeds.is_empty()) {
            self.repair_routes(source, epoch, &tally.counts, &mut leaf_reseeds)?;
        }
        let eval = match eval {
            Some(src) => Some(evaluate(&self.model, src, observer)?),
            None => None,
        };
        let stats = EpochStats {
            epoch,
            train_loss: p.loss_sum / seen,
            train_accuracy: p.accuracy_sum / seen,
            eval,
            learning_rates: lrs.into_array(),
            backbone_frozen: frozen,
            seconds: p.seconds_before + start.elapsed().as_secs_f64(),
            leaf_sharing: Some(leaf_sharing),
            leaf_reseeds,
        };
        self.state.record(stats.clone());
        observer.on_event(&Event::EpochFinished(&stats));
        Ok(stats)
    }

    /// Gives `classes` (those without a leaf, or misrouted) spare leaves (the stall repair,
    /// [`prototree_tree::leaf_reseed`]), chosen by where the epoch's images of each class
    /// went (`tally`). A re-seeded leaf's parameter for its new class is the largest
    /// parameter of any leaf (the evidence of the most confident leaf), and at least what
    /// gives the class 90 % of the leaf's mass.
    fn reseed_leaves(
        &mut self,
        tally: &ClassLeafTally,
        classes: &[usize],
    ) -> Result<Vec<LeafReseed>> {
        let leaves = self.model.leaves();
        let distributions = leaves.distributions()?.to_dtype(DType::F32)?.to_vec2()?;
        let live = self.model.topology().live_leaves();
        let plan = plan_reseeds(&distributions, &live, tally, classes);
        if plan.is_empty() {
            return Ok(plan);
        }
        let largest = leaves
            .params()
            .to_dtype(DType::F32)?
            .max_all()?
            .to_scalar::<f32>()?;
        // softmax gives the class 90 % when e^v = 9 (classes - 1).
        let others = self.model.num_classes().saturating_sub(1).max(1) as f32;
        let value = largest.max((9.0 * others).ln());
        let pairs: Vec<(usize, usize)> = plan.iter().map(|r| (r.leaf, r.class)).collect();
        self.model.leaves_mut().reseed(&pairs, value)?;
        Ok(plan)
    }

    /// Latent patches of training images per class (`None` for a class not seen), from
    /// one more pass over `source`'s batches of `epoch` (the images the epoch trained on):
    /// up to [`ROUTE_TARGET_IMAGES`] of each class in `targets`, a few of every other
    /// class ([`ROUTE_OTHER_IMAGES`] spread over them, 1 to 8 each).
    fn sample_class_patches(
        &self,
        source: &mut dyn BatchSource,
        epoch: usize,
        targets: &[usize],
    ) -> Result<Vec<Option<ClassPatches>>> {
        let num_classes = self.model.num_classes();
        let per_other = (ROUTE_OTHER_IMAGES / num_classes.saturating_sub(1).max(1)).clamp(1, 8);
        let wanted: Vec<usize> = (0..num_classes)
            .map(|c| {
                if targets.contains(&c) {
                    ROUTE_TARGET_IMAGES
                } else {
                    per_other
                }
            })
            .collect();
        let mut patches: Vec<Vec<Tensor>> = vec![Vec::new(); num_classes];
        let mut have = vec![0usize; num_classes];
        for batch in source.batches(epoch) {
            let batch = batch?;
            let labels = batch.labels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
            let mut picked = Vec::new();
            for (i, &y) in labels.iter().enumerate() {
                let y = y as usize;
                if y < num_classes && have[y] < wanted[y] {
                    have[y] += 1;
                    picked.push((i as u32, y));
                }
            }
            if picked.is_empty() {
                if have.iter().zip(&wanted).all(|(h, w)| h >= w) {
                    break;
                }
                continue;
            }
            let index: Vec<u32> = picked.iter().map(|p| p.0).collect();
            let index = Tensor::new(index.as_slice(), batch.images.device())?;
            let images = batch.images.index_select(&index, 0)?;
            let latent = self.model.latent_with(&images, false, true)?;
            let latent = latent.patches.detach();
            for (row, &(_, y)) in picked.iter().enumerate() {
                patches[y].push(latent.get(row)?);
            }
        }
        patches
            .into_iter()
            .enumerate()
            .map(|(class, p)| -> Result<Option<ClassPatches>> {
                if p.is_empty() {
                    return Ok(None);
                }
                Ok(Some(ClassPatches {
                    class,
                    patches: Tensor::stack(&p, 0)?,
                }))
            })
            .collect()
    }

    /// Opens the paths to the re-seeded leaves ([`prototree_tree::route_repair`]): sets
    /// the prototypes that send a re-seeded class the wrong way to latent patches of
    /// training images ([`Learner::sample_class_patches`]), recording them in `reseeds`,
    /// and clears their Adam momentum. With `repair_keeps_routes`, the patches are chosen
    /// to keep the other classes passing each node on their side (`counts[leaf][class]`:
    /// where the epoch's images ended; [`prototree_tree::route_keeping`]).
    fn repair_routes(
        &mut self,
        source: &mut dyn BatchSource,
        epoch: usize,
        counts: &[Vec<f32>],
        reseeds: &mut [LeafReseed],
    ) -> Result<()> {
        let reseeded: Vec<usize> = reseeds.iter().map(|r| r.class).collect();
        let by_class = self.sample_class_patches(source, epoch, &reseeded)?;
        let num_branches = self.model.topology().num_branches();
        let depth = self.model.config().depth();
        let mut prototypes = self.model.prototypes()?;
        for reseed in reseeds.iter_mut() {
            let Some(Some(target)) = by_class.get(reseed.class) else {
                continue;
            };
            let others: Vec<ClassPatches> = by_class
                .iter()
                .flatten()
                .filter(|o| o.class != reseed.class)
                .cloned()
                .collect();
            // The nodes above the common ancestor with the leaf the class's images end in
            // already send them this way: only the path below is repaired.
            let below = common_depth(reseed.leaf, reseed.from_leaf, depth);
            let path: Vec<_> = path_to_leaf(num_branches, reseed.leaf)
                .into_iter()
                .skip(below)
                .collect();
            let plan = if self.schedule.config().repair_keeps_routes {
                plan_route_keeping_traffic(&prototypes, &path, target, &others, counts)?
            } else {
                plan_route(&prototypes, &path, target, &others)?
            };
            for (node, value) in plan {
                prototypes = prototypes.slice_assign(
                    &[node..node + 1, 0..value.dim(0)?],
                    &value.unsqueeze(0)?.to_dtype(prototypes.dtype())?,
                )?;
                reseed.rerouted_nodes.push(node);
            }
        }
        self.model.set_prototypes(&prototypes)?;
        // The momentum of a reset prototype points where its old value was going.
        let reset: Vec<usize> = reseeds
            .iter()
            .flat_map(|r| r.rerouted_nodes.clone())
            .collect();
        if let Some(m) = self.state.optimizers[ParamGroup::Prototypes]
            .moments
            .get_mut(PROTOTYPES)
        {
            let rows = m.exp_avg.dim(0)?;
            let keep: Vec<f32> = (0..rows).map(|r| f32::from(!reset.contains(&r))).collect();
            let mut shape = vec![1usize; m.exp_avg.rank()];
            shape[0] = rows;
            let keep =
                Tensor::from_vec(keep, shape, m.exp_avg.device())?.to_dtype(m.exp_avg.dtype())?;
            m.exp_avg = m.exp_avg.broadcast_mul(&keep)?;
        }
        Ok(())
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
        p: &mut EpochProgress,
    ) -> Result<BatchStats> {
        // Without noise (σ 0) this is the batch itself (a shared tensor, not a copy).
        let images = &with_input_noise(
            &batch.images,
            self.schedule.config().input_noise_at(epoch),
            noise_seed(self.schedule.config().seed, epoch, index),
        )?;
        let model = &mut self.model;
        let labels = batch.labels.to_dtype(DType::U32)?;
        let align = self.schedule.config().flip_alignment;
        let (out, alignment) = if align > 0.0 {
            // Images and mirrors in one pass (one set of batch statistics); the tree's
            // output comes from the originals.
            let both = model.latent_with(&with_mirrors(images)?, true, detach_backbone)?;
            let b = images.dim(0)?;
            let latent = Latent {
                patches: both.patches.narrow(0, 0, b)?,
                height: both.height,
                width: both.width,
            };
            let mirrored = both.patches.narrow(0, b, b)?;
            let term = flip_alignment(
                &latent.patches,
                &mirrored,
                &model.prototypes()?,
                latent.height,
                latent.width,
            )?;
            (model.forward_latent(&latent)?, Some(term))
        } else {
            let latent = model.latent_with(images, true, detach_backbone)?;
            (model.forward_latent(&latent)?, None)
        };
        let loss = nll_loss(&out.probabilities, &labels)?;
        let loss = match alignment {
            Some(term) => (loss + (term * align)?)?,
            None => loss,
        };
        let loss_value = finite_loss(&loss, epoch, index)?;
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
        let targets = one_hot(&labels, model.num_classes())?;
        if let Some(tally) = p.class_leaf_tally.as_mut() {
            *tally = (&*tally + ClassLeafTally::of_batch(&out.leaf_path_probs, &targets)?)?;
        }
        model.leaves_mut().derivative_free_update(
            &out.leaf_path_probs,
            &out.probabilities,
            &targets,
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

    /// The start of a new run: the backbone warm-up ([`crate::warmup`]), logged to the
    /// run directory's [`WARMUP_FILE`], then the prototypes from training patches
    /// ([`prototree_tree::prototype_init`]), as the schedule asks.
    fn start_run(
        &mut self,
        train: &mut dyn BatchSource,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let epochs = warm_up_backbone(
            &self.model,
            &self.schedule,
            train,
            &self.interrupter,
            observer,
        )?;
        match &self.checkpointer {
            Some(c) if !epochs.is_empty() => {
                write_warmup_log(&c.run_dir().root().join(WARMUP_FILE), &epochs)?
            }
            _ => {}
        }
        self.warmup = epochs;
        let config = self.schedule.config();
        if config.prototypes_from_patches {
            prototypes_from_patches(&mut self.model, train, config.seed)?;
        }
        self.start_pending = false;
        Ok(())
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
        if self.start_pending {
            self.start_run(train, observer)?;
            self.state.train_seconds = seconds_before + start.elapsed().as_secs_f64();
            if let Some(c) = &self.checkpointer {
                // A run with a checkpoint has been started: resuming skips the start.
                c.save_last(&self.model, &self.state)?;
            }
        }
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
