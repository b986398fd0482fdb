//! The learner's state: everything besides the model that a resumed run needs, in one
//! struct. Checkpoints save exactly this (see [`crate::checkpoint`]). No random-generator
//! state is needed: shuffling and augmentation are drawn from `(seed, epoch)` by the batch
//! source, with the seed in the schedule (and so in the fingerprint).

use candle_core::Tensor;
use prototree_tree::EpochStats;

use crate::adam::AdamState;
use crate::param_group::GroupMap;

/// Where an interrupted epoch stopped: everything needed to continue it exactly as an
/// uninterrupted run would have (the model and the optimiser state hold the rest).
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
    /// Sum of their mean routing entropies.
    pub routing_entropy_sum: f64,
    /// Seconds spent on them.
    pub seconds: f64,
    /// The leaf parameters at the start of the epoch (the derivative-free update
    /// subtracts a share of them at every batch).
    pub epoch_start_leaves: Tensor,
    /// Where the trained batches' images of each class went, `(2, leaves, classes)`: how
    /// many ended in each leaf, and their summed path probability there
    /// ([`prototree_tree::ClassLeafTally`]); `None` in checkpoints of builds before it (the
    /// epoch is then not measured and re-seeds nothing).
    pub class_leaf_tally: Option<Tensor>,
}

/// The state of a training run.
#[derive(Debug, Clone)]
pub struct LearnerState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// The interrupted epoch that the next epoch continues, if any.
    pub partial_epoch: Option<PartialEpoch>,
    /// Adam moments and step counts by parameter group.
    pub optimizers: GroupMap<AdamState>,
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
}

impl LearnerState {
    /// The state of a run that has not started, identified by `fingerprint`.
    pub fn new(fingerprint: String) -> Self {
        Self {
            epochs_done: 0,
            partial_epoch: None,
            optimizers: GroupMap::default(),
            history: Vec::new(),
            best_epoch: None,
            best_score: f64::NEG_INFINITY,
            fingerprint,
            train_seconds: 0.0,
        }
    }

    /// Records a completed epoch; returns whether its score is the best so far.
    pub fn record(&mut self, stats: EpochStats) -> bool {
        let score = stats
            .eval
            .as_ref()
            .map(|e| e.accuracy_soft)
            .unwrap_or(stats.train_accuracy);
        let improved = score > self.best_score;
        if improved {
            self.best_score = score;
            self.best_epoch = Some(stats.epoch);
        }
        self.epochs_done = stats.epoch;
        self.history.push(stats);
        improved
    }
}
