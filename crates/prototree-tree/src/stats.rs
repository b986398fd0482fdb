//! Statistics of training batches and epochs, as reported to observers and saved in
//! `metrics.jsonl` and checkpoints.

use crate::inference::EvalReport;
use crate::leaf_reseed::LeafReseed;
use crate::leaf_sharing::LeafSharing;

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
    /// Mean entropy (nats) of the batch's images' distributions over leaves.
    pub routing_entropy: f64,
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
    /// How the leaves share the classes at the end of the epoch (absent in logs of
    /// builds before 2026-12-02).
    #[serde(default)]
    pub leaf_sharing: Option<LeafSharing>,
    /// Leaves re-seeded at the end of the epoch for classes without a leaf
    /// ([`crate::leaf_reseed`]; empty when the run does not re-seed, and in logs of builds
    /// before 2026-12-06).
    #[serde(default)]
    pub leaf_reseeds: Vec<LeafReseed>,
}

/// One epoch of the backbone warm-up (`prototree_learn::warmup`): the backbone with a
/// temporary linear classifier.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WarmupEpoch {
    /// 1-based warm-up epoch.
    pub epoch: usize,
    /// Warm-up epochs of the schedule.
    pub num_epochs: usize,
    /// Mean cross-entropy of the linear classifier over the epoch's batches.
    pub loss: f64,
    /// Its training accuracy (mean over batches).
    pub accuracy: f64,
    /// Learning rate of the backbone and the classifier.
    pub learning_rate: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
}
