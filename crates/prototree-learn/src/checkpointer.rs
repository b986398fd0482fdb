//! The checkpoint policy: after every epoch the run directory's `checkpoints/last` is
//! replaced, and `checkpoints/best` too when the epoch's score is the best so far.

use prototree_tree::{ModelMeta, ProtoTree};

use crate::checkpoint::save_checkpoint;
use crate::metrics_log::MetricsLog;
use crate::run_dir::RunDir;
use crate::state::LearnerState;
use crate::Result;

/// Keeps the last and the best checkpoint of a run.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    run: RunDir,
    meta: ModelMeta,
}

impl Checkpointer {
    /// Checkpoints into `run`, saving the model with `meta` (its `config.json`).
    pub fn new(run: RunDir, meta: ModelMeta) -> Self {
        Self { run, meta }
    }

    /// The run directory.
    pub fn run_dir(&self) -> &RunDir {
        &self.run
    }

    /// The model metadata saved with each checkpoint.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// The metrics log of the run.
    pub fn metrics(&self) -> MetricsLog {
        self.run.metrics()
    }

    /// Replaces the last checkpoint.
    pub fn save_last(&self, model: &ProtoTree, state: &LearnerState) -> Result<()> {
        save_checkpoint(&self.run.last_checkpoint(), model, &self.meta, state)
    }

    /// Replaces the last checkpoint, and the best one when `improved`.
    pub fn save(&self, model: &ProtoTree, state: &LearnerState, improved: bool) -> Result<()> {
        self.save_last(model, state)?;
        if improved {
            save_checkpoint(&self.run.best_checkpoint(), model, &self.meta, state)?;
        }
        Ok(())
    }
}
