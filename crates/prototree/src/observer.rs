//! Progress of the high-level pipeline, for the CLI to draw.

use prototree_tree::TrainObserver;

/// Long steps of the pipeline that report progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Rendering the synthetic data set.
    Synthesize,
    /// Decoding and resizing images.
    LoadImages,
    /// Training (epochs are reported through [`TrainObserver`]).
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
            Stage::Train => "training",
            Stage::Evaluate => "evaluating",
            Stage::Prune => "pruning",
            Stage::Project => "projecting prototypes",
            Stage::Report => "writing report",
        }
    }
}

/// Receives pipeline progress; every method has a no-op default.
pub trait PipelineObserver: TrainObserver {
    /// A stage starts; `total` work units (0 when unknown).
    fn stage_started(&mut self, _stage: Stage, _total: usize) {}
    /// `done` work units of the current stage are finished.
    fn stage_progress(&mut self, _done: usize) {}
    /// The current stage ended.
    fn stage_finished(&mut self, _stage: Stage) {}
    /// A one-line message (the CLI logs it).
    fn message(&mut self, _text: &str) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;
impl TrainObserver for Silent {}
impl PipelineObserver for Silent {}
