//! Progress events: the one protocol through which training, evaluation and the pipeline
//! stages report to whoever draws them (the CLI's progress bars, a test's recorder).
//!
//! Libraries never print; they emit an [`Event`] to an [`Observer`]. `()` observes
//! nothing.

use crate::stats::{BatchStats, EpochStats};

/// Long steps of the pipeline that report progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Rendering the synthetic data set.
    Synthesize,
    /// Decoding and resizing images.
    LoadImages,
    /// Training the backbone with a temporary linear classifier before the tree's first
    /// epoch (progress in batches).
    WarmUp,
    /// Training (epochs are reported as [`Event::EpochStarted`] / [`Event::EpochFinished`]).
    Train,
    /// Evaluating a model.
    Evaluate,
    /// Pruning.
    Prune,
    /// Projecting prototypes onto training patches.
    Project,
    /// Writing reports and images.
    Report,
}

impl Stage {
    /// A short human-readable name.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Synthesize => "synthesising images",
            Stage::LoadImages => "loading images",
            Stage::WarmUp => "warming up the backbone",
            Stage::Train => "training",
            Stage::Evaluate => "evaluating",
            Stage::Prune => "pruning",
            Stage::Project => "projecting prototypes",
            Stage::Report => "writing report",
        }
    }
}

/// Something that happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    /// A training epoch starts.
    EpochStarted {
        /// 1-based epoch.
        epoch: usize,
        /// Epochs of the schedule.
        num_epochs: usize,
        /// Batches in the epoch.
        num_batches: usize,
    },
    /// A training batch was trained.
    BatchFinished(&'a BatchStats),
    /// An evaluation pass starts.
    EvaluationStarted {
        /// Batches to evaluate.
        num_batches: usize,
    },
    /// An evaluation batch was processed.
    EvaluationBatch,
    /// A training epoch ended.
    EpochFinished(&'a EpochStats),
    /// A pipeline stage starts.
    StageStarted {
        /// The stage.
        stage: Stage,
        /// Work units (0 when unknown).
        total: usize,
    },
    /// `done` work units of the current stage are finished.
    StageProgress {
        /// Units done so far.
        done: usize,
    },
    /// A pipeline stage ended.
    StageFinished(Stage),
    /// A one-line message for the user.
    Message(&'a str),
}

/// Receives [`Event`]s; the default ignores them.
pub trait Observer {
    /// Called for every event.
    fn on_event(&mut self, _event: &Event<'_>) {}
}

/// Observes nothing.
impl Observer for () {}

/// Shorthands for emitting the pipeline events.
impl dyn Observer + '_ {
    /// Emits [`Event::StageStarted`].
    pub fn stage_started(&mut self, stage: Stage, total: usize) {
        self.on_event(&Event::StageStarted { stage, total });
    }

    /// Emits [`Event::StageProgress`].
    pub fn stage_progress(&mut self, done: usize) {
        self.on_event(&Event::StageProgress { done });
    }

    /// Emits [`Event::StageFinished`].
    pub fn stage_finished(&mut self, stage: Stage) {
        self.on_event(&Event::StageFinished(stage));
    }

    /// Emits [`Event::Message`].
    pub fn message(&mut self, text: &str) {
        self.on_event(&Event::Message(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Vec<String>);
    impl Observer for Recorder {
        fn on_event(&mut self, event: &Event<'_>) {
            self.0.push(format!("{event:?}"));
        }
    }

    #[test]
    fn shorthands_emit_events() {
        let mut r = Recorder::default();
        let obs: &mut dyn Observer = &mut r;
        obs.stage_started(Stage::Prune, 3);
        obs.stage_progress(1);
        obs.stage_finished(Stage::Prune);
        obs.message("hi");
        assert_eq!(r.0.len(), 4);
        assert!(r.0[0].contains("Prune") && r.0[3].contains("hi"));
        let unit: &mut dyn Observer = &mut ();
        unit.message("ignored");
    }

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync>() {}
        check::<Stage>();
        check::<Event<'static>>();
    }
}
