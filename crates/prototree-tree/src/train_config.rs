//! Training schedule (`TrainConfig`), with the reference's defaults (spec §2.1–2.3).

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The training schedule. Serialised into `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Number of epochs. Reference: 100.
    pub epochs: usize,
    /// Images per batch. Reference: 64.
    pub batch_size: usize,
    /// Learning rate of the prototypes. Reference: 1e-3.
    pub lr: f64,
    /// Learning rate of the add-on and the backbone's last block. Reference: 1e-3.
    pub lr_block: f64,
    /// Learning rate of the rest of the backbone. Reference: 1e-5.
    pub lr_net: f64,
    /// AdamW weight decay. Reference: 0.
    pub weight_decay: f64,
    /// Adam epsilon. Reference: 1e-7.
    pub adam_eps: f64,
    /// Epochs during which the backbone (except its last block) is frozen. Reference: 2.
    pub freeze_epochs: usize,
    /// Epochs after which the learning rates are multiplied by `gamma`.
    pub milestones: Vec<usize>,
    /// Learning-rate decay factor at each milestone. Reference: 0.5.
    pub gamma: f64,
    /// Seed of parameter initialisation, shuffling and augmentation.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 64,
            lr: 1e-3,
            lr_block: 1e-3,
            lr_net: 1e-5,
            weight_decay: 0.0,
            adam_eps: 1e-7,
            freeze_epochs: 2,
            milestones: Vec::new(),
            gamma: 0.5,
            seed: 0,
        }
    }
}

fn positive(name: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            name,
            requirement: "finite and > 0",
            got: v,
        })
    }
}

impl TrainConfig {
    /// Validates the schedule.
    pub fn check(&self) -> Result<ValidTrainConfig, ConfigError> {
        if self.epochs == 0 {
            return Err(ConfigError::Zero { name: "epochs" });
        }
        if self.batch_size == 0 {
            return Err(ConfigError::Zero { name: "batch_size" });
        }
        positive("lr", self.lr)?;
        positive("lr_block", self.lr_block)?;
        positive("lr_net", self.lr_net)?;
        positive("adam_eps", self.adam_eps)?;
        positive("gamma", self.gamma)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(ConfigError::OutOfRange {
                name: "weight_decay",
                requirement: "finite and >= 0",
                got: self.weight_decay,
            });
        }
        if self.milestones.first() == Some(&0) || self.milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ConfigError::Milestones(self.milestones.clone()));
        }
        Ok(ValidTrainConfig(self.clone()))
    }
}

/// A [`TrainConfig`] that passed [`TrainConfig::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidTrainConfig(TrainConfig);

impl ValidTrainConfig {
    /// The checked schedule.
    pub fn config(&self) -> &TrainConfig {
        &self.0
    }

    /// Learning-rate multiplier during 1-based `epoch` (MultiStepLR stepped once per epoch).
    pub fn lr_factor(&self, epoch: usize) -> f64 {
        let passed = self.0.milestones.iter().filter(|m| **m < epoch).count();
        self.0.gamma.powi(passed as i32)
    }

    /// Whether the backbone (except its last block) is frozen during 1-based `epoch`.
    pub fn backbone_frozen(&self, epoch: usize) -> bool {
        epoch <= self.0.freeze_epochs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule() {
        let cfg = TrainConfig {
            milestones: vec![2, 4],
            freeze_epochs: 1,
            ..Default::default()
        }
        .check()
        .unwrap();
        let f: Vec<f64> = (1..=5).map(|e| cfg.lr_factor(e)).collect();
        assert_eq!(f, vec![1.0, 1.0, 0.5, 0.5, 0.25]);
        assert!(cfg.backbone_frozen(1) && !cfg.backbone_frozen(2));
        assert!(TrainConfig {
            milestones: vec![3, 3],
            ..Default::default()
        }
        .check()
        .is_err());
        assert!(TrainConfig {
            lr: f64::NAN,
            ..Default::default()
        }
        .check()
        .is_err());
    }
}
