//! The model bundle: a tree with everything that travels with it (class names,
//! preprocessing, schedule, projection records) and its pipeline stage, which follows
//! from what was done to it: [`SavedModel::record_pruning`] after pruning,
//! [`SavedModel::record_projection`] after projection. Both keep the bundle consistent
//! (records of pruned nodes go; records must name live decisions).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::io::{ModelMeta, ProjectionRecord};
use crate::model::ProtoTree;
use crate::topology::BranchState;
use crate::{Error, Result};

/// Where a model is in the pipeline: trained, then pruned, then projected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum ModelStage {
    /// As trained (possibly imported unpruned).
    #[default]
    Trained,
    /// Pruned (near-uniform subtrees removed).
    Pruned,
    /// Prototypes projected onto training patches.
    Projected,
}

impl ModelStage {
    /// The name written in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            ModelStage::Trained => "trained",
            ModelStage::Pruned => "pruned",
            ModelStage::Projected => "projected",
        }
    }
}

impl fmt::Display for ModelStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelStage {
    type Err = String;

    /// `trained`, `pruned` or `projected`; the empty string (files that never said) is
    /// `trained`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "trained" => Ok(ModelStage::Trained),
            "pruned" => Ok(ModelStage::Pruned),
            "projected" => Ok(ModelStage::Projected),
            other => Err(format!(
                "unknown stage `{other}` (expected trained, pruned or projected)"
            )),
        }
    }
}

impl Serialize for ModelStage {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ModelStage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

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

    /// A bundle read from a model directory, whose loader checked the records' rows.
    pub(crate) fn from_loaded(
        model: ProtoTree,
        meta: ModelMeta,
        projections: Vec<ProjectionRecord>,
        stage: ModelStage,
    ) -> Self {
        Self {
            model,
            meta,
            projections,
            stage,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_round_trip() {
        for s in [
            ModelStage::Trained,
            ModelStage::Pruned,
            ModelStage::Projected,
        ] {
            assert_eq!(s.name().parse::<ModelStage>(), Ok(s));
        }
        assert_eq!("".parse::<ModelStage>(), Ok(ModelStage::Trained));
        assert!("pruned_and_projected".parse::<ModelStage>().is_err());
        assert!(ModelStage::Trained < ModelStage::Projected);
    }
}
