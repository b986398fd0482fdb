//! The model bundle: a tree with everything that travels with it (class names,
//! preprocessing, schedule, projection records) and its pipeline stage, which follows
//! from what was done to it: [`SavedModel::record_pruning`] after pruning,
//! [`SavedModel::record_projection`] after projection. Both keep the bundle consistent
//! (records of pruned nodes go; records must name live decisions).

use std::path::Path;

use candle_core::Device;

use crate::io::{read_model_dir, ModelMeta, ProjectionRecord};
use crate::model::ProtoTree;
use crate::stage::ModelStage;
use crate::topology::BranchState;
use crate::{Error, Result};

/// A model with its configuration, projection records and stage: what a model directory
/// holds, and what loading returns.
#[derive(Debug)]
pub struct SavedModel {
    /// The model.
    pub model: ProtoTree,
    /// The configuration (architecture, class names, preprocessing, schedule).
    pub meta: ModelMeta,
    projections: Vec<ProjectionRecord>,
    stage: ModelStage,
}

impl SavedModel {
    /// A freshly trained model (no projection records).
    pub fn new(model: ProtoTree, meta: ModelMeta) -> Self {
        Self {
            model,
            meta,
            projections: Vec::new(),
            stage: ModelStage::Trained,
        }
    }

    /// A model whose history is known from elsewhere: a model directory, or an imported
    /// checkpoint of the reference (projected there, with no records here). Every record
    /// must name a live decision of the model.
    pub fn from_parts(
        model: ProtoTree,
        meta: ModelMeta,
        projections: Vec<ProjectionRecord>,
        stage: ModelStage,
    ) -> Result<Self> {
        let mut saved = Self {
            model,
            meta,
            projections: Vec::new(),
            stage,
        };
        saved.check_records(&projections)?;
        saved.projections = projections;
        Ok(saved)
    }

    /// The pipeline stage.
    pub fn stage(&self) -> ModelStage {
        self.stage
    }

    /// Projection records, one per projected decision (empty before projection).
    pub fn projections(&self) -> &[ProjectionRecord] {
        &self.projections
    }

    /// Class names, index = class id.
    pub fn class_names(&self) -> &[String] {
        &self.meta.class_names
    }

    /// Marks the model as pruned after its topology was pruned: projection records of
    /// nodes that are no longer decisions go.
    pub fn record_pruning(&mut self) {
        let topology = self.model.topology();
        self.projections
            .retain(|r| topology.branch_state(r.row as usize) == BranchState::Decision);
        self.stage = self.stage.max(ModelStage::Pruned);
    }

    /// Records a projection of the model's prototypes (the prototypes already hold the
    /// projected values): the records replace any earlier ones and the stage becomes
    /// projected. Every record must name a live decision.
    pub fn record_projection(&mut self, records: Vec<ProjectionRecord>) -> Result<()> {
        self.check_records(&records)?;
        self.projections = records;
        self.stage = ModelStage::Projected;
        Ok(())
    }

    /// Saves the bundle into directory `dir` (see [`crate::io`]).
    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::io::write_model_dir(dir, &self.model, &self.meta, &self.projections, self.stage)
    }

    fn check_records(&self, records: &[ProjectionRecord]) -> Result<()> {
        let topology = self.model.topology();
        for r in records {
            let row = r.row as usize;
            if row >= topology.num_branches() || topology.branch_state(row) != BranchState::Decision
            {
                return Err(Error::Data(format!(
                    "projection record for prototype row {row}, which is not a decision of the tree"
                )));
            }
        }
        Ok(())
    }
}

/// Loads a model directory written by [`SavedModel::save`] or [`crate::save_model`] onto
/// `device` (see [`crate::io`] for the format and its checks).
pub fn load_model(dir: &Path, device: &Device) -> Result<SavedModel> {
    let (model, meta, projections, stage) = read_model_dir(dir, device)?;
    Ok(SavedModel {
        model,
        meta,
        projections,
        stage,
    })
}
