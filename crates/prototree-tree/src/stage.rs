//! The pipeline stage of a model, as `config.json` names it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
