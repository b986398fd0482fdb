//! Building a [`Learner`]: the model and schedule, then `with_*` options with defaults
//! (no checkpoints, no evaluation during training, an interrupter nobody stops, a fresh
//! state), or a checkpoint to resume.

use prototree_tree::{ModelMeta, ProtoTree, TrainConfig};

use crate::adam::{Adam, AdamConfig};
use crate::checkpoint::Checkpoint;
use crate::checkpointer::Checkpointer;
use crate::fingerprint::fingerprint_differences;
use crate::interrupt::Interrupter;
use crate::learner::Learner;
use crate::param_group::partition;
use crate::run_dir::RunDir;
use crate::state::LearnerState;
use crate::{Error, Result};

/// What a resumed checkpoint brings besides its model.
#[derive(Debug)]
struct Resumed {
    state: LearnerState,
    dir: std::path::PathBuf,
    class_names: Vec<String>,
}

/// Options of a [`Learner`]; [`LearnerBuilder::build`] checks them.
#[derive(Debug)]
pub struct LearnerBuilder {
    model: ProtoTree,
    schedule: TrainConfig,
    resumed: Option<Resumed>,
    checkpointer: Option<Checkpointer>,
    eval_every: usize,
    interrupter: Interrupter,
    fingerprint: String,
}

impl Learner {
    /// A builder training `model` with `schedule`.
    pub fn builder(model: ProtoTree, schedule: &TrainConfig) -> LearnerBuilder {
        LearnerBuilder {
            model,
            schedule: schedule.clone(),
            resumed: None,
            checkpointer: None,
            eval_every: 0,
            interrupter: Interrupter::new(),
            fingerprint: String::new(),
        }
    }

    /// A builder continuing the run saved in `checkpoint` with `schedule` (its model and
    /// state); [`LearnerBuilder::build`] refuses it when its fingerprint or classes differ
    /// from those given to the builder.
    pub fn resume(checkpoint: Checkpoint, schedule: &TrainConfig) -> LearnerBuilder {
        let Checkpoint { saved, state, dir } = checkpoint;
        let mut b = Self::builder(saved.model, schedule);
        b.resumed = Some(Resumed {
            state,
            dir,
            class_names: saved.meta.class_names,
        });
        b
    }
}

impl LearnerBuilder {
    /// Checkpoints (last + best) and the metrics log in `run`, saving the model with
    /// `meta`. Default: none.
    pub fn with_run_dir(mut self, run: RunDir, meta: ModelMeta) -> Self {
        self.checkpointer = Some(Checkpointer::new(run, meta));
        self
    }

    /// Evaluates on the test data every `epochs` epochs during [`Learner::fit`] (never the
    /// last epoch: the caller evaluates the final model). Default 0: never.
    pub fn with_eval_every(mut self, epochs: usize) -> Self {
        self.eval_every = epochs;
        self
    }

    /// Stops training when `interrupter` is stopped. Default: a handle nobody holds.
    pub fn with_interrupter(mut self, interrupter: Interrupter) -> Self {
        self.interrupter = interrupter;
        self
    }

    /// Identifies the run's configuration (saved with checkpoints; a resumed checkpoint
    /// must carry the same). Default: empty.
    pub fn with_fingerprint(mut self, fingerprint: String) -> Self {
        self.fingerprint = fingerprint;
        self
    }

    /// Checks the schedule (and a resumed checkpoint) and builds the learner.
    pub fn build(self) -> Result<Learner> {
        let schedule = self.schedule.check()?;
        let start_pending = self.resumed.is_none()
            && (schedule.config().backbone_warmup_epochs > 0
                || schedule.config().prototypes_from_patches);
        let state = match self.resumed {
            None => LearnerState::new(self.fingerprint),
            Some(ck) => {
                check_resumable(&ck, &self.fingerprint, self.checkpointer.as_ref())?;
                ck.state
            }
        };
        let adam = AdamConfig::of_schedule(&schedule);
        let kind = self.model.config().backbone();
        let with_addon = schedule.config().last_block_with_addon_for(kind);
        let optimizers = partition(&self.model, with_addon)?.map(|_, vars| Adam::new(vars, adam));
        Ok(Learner {
            model: self.model,
            schedule,
            optimizers,
            state,
            checkpointer: self.checkpointer,
            eval_every: self.eval_every,
            interrupter: self.interrupter,
            start_pending,
            warmup: Vec::new(),
        })
    }
}

/// Refuses a checkpoint written by another configuration or for other classes.
fn check_resumable(ck: &Resumed, fingerprint: &str, to: Option<&Checkpointer>) -> Result<()> {
    if ck.state.fingerprint != fingerprint {
        let diffs = fingerprint_differences(&ck.state.fingerprint, fingerprint);
        return Err(Error::OtherRun {
            dir: ck.dir.clone(),
            reason: format!(
                "the checkpoint was written by another configuration ({}); resume with the run's own configuration",
                if diffs.is_empty() { "the fingerprints differ".to_string() } else { diffs.join("; ") }
            ),
        });
    }
    if let Some(c) = to {
        if ck.class_names != c.meta().class_names {
            return Err(Error::OtherRun {
                dir: ck.dir.clone(),
                reason: "the checkpoint's classes differ from those of the data set".into(),
            });
        }
    }
    Ok(())
}
