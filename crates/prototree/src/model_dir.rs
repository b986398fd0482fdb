//! The model-directory workflow as one type: open a model directory, then prune, project,
//! evaluate, explain, export, report and save, each a method.
//!
//! ```no_run
//! use std::path::Path;
//! use prototree::prelude::*;
//! use prototree::candle_core::Device;
//!
//! let mut dir = ModelDir::open(Path::new("runs/birds"), &Device::Cpu)?;
//! let pruning = dir.prune(0.01)?;
//! dir.project(Path::new("data/birds"), &mut ())?;
//! dir.save(Path::new("runs/birds-projected"))?;
//! println!("{} decisions left, {}", pruning.decisions_after, dir.evaluate(Path::new("data/birds"), &mut ())?);
//! dir.export(ExportFormat::Svg, Path::new("tree.svg"))?;
//! # Ok::<(), prototree::Error>(())
//! ```

use std::path::{Path, PathBuf};

use candle_core::Device;
use prototree_interpret::{Interpret, ProjectionRule, PruneReport};
use prototree_tree::{
    load_model, EvalReport, ModelStage, NodeId, ProjectionRecord, Routing, SavedModel,
};

use crate::eval::{evaluate_model, EvalDetails};
use crate::explain::{explain_images, ExplainedImage};
use crate::export::{export_model, ExportFormat, ExportOutcome};
use crate::report::{report_model, ReportOptions};
use crate::workflow::{project_on_loader, projection_loader};
use crate::Result;
use prototree_tree::Observer;

/// Images per batch of evaluation and projection.
const BATCH_SIZE: usize = 64;

/// A model directory, loaded: the bundle and where it came from (or was last saved to).
#[derive(Debug)]
pub struct ModelDir {
    path: PathBuf,
    saved: SavedModel,
}

impl ModelDir {
    /// Loads the model directory `path` onto `device`.
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            saved: load_model(path, device)?,
        })
    }

    /// Where the model was loaded from or last saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bundle (model, configuration, projection records, stage).
    pub fn model(&self) -> &SavedModel {
        &self.saved
    }

    /// The pipeline stage.
    pub fn stage(&self) -> ModelStage {
        self.saved.stage()
    }

    /// Prunes near-uniform subtrees (max leaf probability ≤ `tau`; the reference uses 0.01).
    pub fn prune(&mut self, tau: f32) -> Result<PruneReport> {
        Ok(self.saved.prune(tau)?)
    }

    /// Merges the decisions whose reachable leaves all predict one class (they decide
    /// nothing; greedy predictions do not change) and returns them.
    pub fn merge_same_class(&mut self) -> Result<Vec<NodeId>> {
        Ok(self.saved.merge_same_class()?)
    }

    /// Projects every prototype onto its nearest allowed patch of the training split of
    /// `data` (CUB or ImageFolder layout), as the model's data protocol shows the training
    /// images to projection (the reference protocol: cropped to their bounding boxes).
    pub fn project(&mut self, data: &Path, obs: &mut dyn Observer) -> Result<&[ProjectionRecord]> {
        let (_, train) = projection_loader(data, &self.saved.meta, BATCH_SIZE, obs)?;
        let device = self.saved.model.device().clone();
        project_on_loader(
            &mut self.saved,
            &train,
            &device,
            ProjectionRule::Nearest,
            obs,
        )?;
        Ok(self.saved.projections())
    }

    /// Accuracies, fidelity and path lengths on the test split of `data`.
    pub fn evaluate(&self, data: &Path, obs: &mut dyn Observer) -> Result<EvalReport> {
        Ok(self.evaluate_detailed(data, Routing::Soft, obs)?.report)
    }

    /// [`ModelDir::evaluate`] with per-class accuracy and the confusion matrix of `routing`.
    pub fn evaluate_detailed(
        &self,
        data: &Path,
        routing: Routing,
        obs: &mut dyn Observer,
    ) -> Result<EvalDetails> {
        evaluate_model(&self.saved, data, routing, BATCH_SIZE, obs)
    }

    /// Explains the greedy prediction of each image (pages and pictures under `out`).
    pub fn explain(
        &self,
        images: &[PathBuf],
        out: &Path,
        obs: &mut dyn Observer,
    ) -> Result<Vec<ExplainedImage>> {
        explain_images(&self.saved, images, None, out, obs)
    }

    /// Exports the decision tree as DOT, SVG or JSON to `out`.
    pub fn export(&self, format: ExportFormat, out: &Path) -> Result<ExportOutcome> {
        let title = format!("ProtoTree {}", self.path.display());
        export_model(&self.saved, &title, format, out)
    }

    /// Writes the HTML report to `html`; with `data`, test accuracies, explained test
    /// images and the gallery's training patches as `opts` says.
    pub fn report(
        &self,
        data: Option<&Path>,
        html: &Path,
        opts: &ReportOptions,
        obs: &mut dyn Observer,
    ) -> Result<PathBuf> {
        report_model(&self.saved, &self.path, data, html, opts, obs)
    }

    /// Saves the model directory to `out`, which becomes its path.
    pub fn save(&mut self, out: &Path) -> Result<()> {
        self.saved.save(out)?;
        self.path = out.to_path_buf();
        Ok(())
    }
}
