//! Model configuration (`TreeConfig`) and its checked form (`ValidTreeConfig`).

use prototree_backbone::BackboneKind;
use prototree_limits::{check, maxima};
use serde::{Deserialize, Serialize};

use crate::topology::MAX_DEPTH;
use crate::ConfigError;

/// Architecture of a prototype tree. Serialised into `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TreeConfig {
    /// Feature extractor.
    pub backbone: BackboneKind,
    /// Depth of the complete tree (2^depth − 1 prototypes, 2^depth leaves). Reference: 9.
    pub depth: usize,
    /// Channels `D` of the add-on layer = prototype length. Reference: 256.
    pub proto_dim: usize,
    /// Number of classes.
    pub num_classes: usize,
}

impl Default for TreeConfig {
    fn default() -> Self {
        Self {
            backbone: BackboneKind::Resnet50,
            depth: 9,
            proto_dim: 256,
            num_classes: 200,
        }
    }
}

impl TreeConfig {
    /// Validates the configuration.
    pub fn check(&self) -> Result<ValidTreeConfig, ConfigError> {
        if self.depth == 0 || self.depth > MAX_DEPTH {
            return Err(ConfigError::Depth {
                max: MAX_DEPTH,
                got: self.depth,
            });
        }
        if self.proto_dim == 0 {
            return Err(ConfigError::Zero { name: "proto_dim" });
        }
        check::at_most(
            "",
            "proto_dim",
            self.proto_dim as u64,
            maxima::MAX_PROTO_DIM,
        )?;
        if self.num_classes < 2 {
            return Err(ConfigError::OutOfRange {
                name: "num_classes",
                requirement: "at least 2",
                got: self.num_classes as f64,
            });
        }
        check::at_most(
            "",
            "num_classes",
            self.num_classes as u64,
            maxima::MAX_CLASSES,
        )?;
        Ok(ValidTreeConfig(self.clone()))
    }
}

/// A [`TreeConfig`] that passed [`TreeConfig::check`]: the only way to build a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidTreeConfig(TreeConfig);

impl ValidTreeConfig {
    /// The checked configuration.
    pub fn config(&self) -> &TreeConfig {
        &self.0
    }
    /// Feature extractor.
    pub fn backbone(&self) -> BackboneKind {
        self.0.backbone
    }
    /// Tree depth.
    pub fn depth(&self) -> usize {
        self.0.depth
    }
    /// Prototype length.
    pub fn proto_dim(&self) -> usize {
        self.0.proto_dim
    }
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.0.num_classes
    }
    /// Number of prototypes (branches of the complete tree).
    pub fn num_prototypes(&self) -> usize {
        (1 << self.0.depth) - 1
    }
    /// Number of leaves of the complete tree.
    pub fn num_leaves(&self) -> usize {
        1 << self.0.depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_rejects_bad_values() {
        let ok = TreeConfig::default().check().unwrap();
        assert_eq!(ok.num_prototypes(), 511);
        assert!(TreeConfig {
            depth: 0,
            ..Default::default()
        }
        .check()
        .is_err());
        assert!(TreeConfig {
            num_classes: 1,
            ..Default::default()
        }
        .check()
        .is_err());
        let json = serde_json::to_string(&TreeConfig::default()).unwrap();
        let back: TreeConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, TreeConfig::default());
    }
}
