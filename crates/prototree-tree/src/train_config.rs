//! Training schedule (`TrainConfig`), with the reference's defaults (spec §2.1–2.3).

use prototree_backbone::BackboneKind;
use prototree_data::Protocol;
use prototree_limits::{check, maxima};
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
    /// How the training, projection and test images are drawn from the data set. `None`:
    /// not recorded (configurations of builds before it, which trained with
    /// [`Protocol::Plain`]); a new run without one uses [`Protocol::Reference`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Whether the backbone's last block trains with the add-on (at `lr_block`, never
    /// frozen) instead of with the rest of the backbone (at `lr_net`). `None`: as the
    /// reference does for the backbone ([`BackboneKind::reference_trains_last_block_with_addon`]:
    /// only the iNaturalist ResNet-50). Builds before this setting trained every backbone's
    /// last block with the add-on and recorded nothing; resuming such a run keeps that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_block_with_addon: Option<bool>,
    /// Whether a class without a leaf of its own, or misrouted, gets a spare leaf at the
    /// end of an epoch ([`crate::leaf_reseed`], the stall repair), after 3/8 of the
    /// epochs before the first milestone and until it (without milestones, 70 % of the
    /// epochs stand for it). Off in the reference's recipe and in configurations of builds
    /// before it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reseed_leaves: bool,
    /// With `reseed_leaves`: choose each route repair's patch by what it does to every
    /// class passing the node ([`crate::route_keeping`]) instead of by the re-seeded class
    /// alone ([`crate::route_repair`]). On in the scratch recipe; off by default, in the
    /// demo and in configurations of builds before it (docs/results.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repair_keeps_routes: bool,
    /// Epochs of supervised backbone warm-up before the tree's first epoch (not counted in
    /// `epochs`): the backbone with global average pooling and a temporary linear
    /// classifier, trained with cross-entropy at `lr_net` (`prototree_learn::warmup`).
    /// 0 (none) in the reference's recipe and in configurations of builds before it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub backbone_warmup_epochs: usize,
    /// Whether a new run starts its prototypes as latent patches of training images
    /// (after the warm-up, if any; [`crate::prototype_init`]) instead of draws from
    /// `N(0.5, 0.1)`. Off in the reference's recipe and in configurations of builds
    /// before it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prototypes_from_patches: bool,
    /// Weight of the flip-alignment term added to the loss ([`crate::flip_alignment`]):
    /// each training batch also goes through the backbone mirrored, and each prototype's
    /// attention over the feature map should follow the mirror. 0 (the default, and the
    /// reference's objective): no term and no mirrored pass.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub flip_alignment: f64,
    /// Standard deviation of Gaussian noise added to each normalised training image
    /// (clipped at 1.25 σ; `prototree_learn::input_noise`): the stability metric's
    /// perturbation, trained against. 0 (the default, and the reference's): none.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub input_noise: f64,
    /// The first epoch trained with [`TrainConfig::input_noise`] (0 or 1: from the start):
    /// noise from a later epoch steadies a tree whose prototypes have settled, without
    /// moving them off the small parts (docs/explanations.md).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub input_noise_from_epoch: usize,
}

impl TrainConfig {
    /// The input noise of `epoch` (1-based): [`TrainConfig::input_noise`] from
    /// [`TrainConfig::input_noise_from_epoch`] on, else 0.
    pub fn input_noise_at(&self, epoch: usize) -> f64 {
        if epoch >= self.input_noise_from_epoch {
            self.input_noise
        } else {
            0.0
        }
    }
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero(v: &usize) -> bool {
    *v == 0
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
            protocol: None,
            last_block_with_addon: None,
            reseed_leaves: false,
            repair_keeps_routes: false,
            backbone_warmup_epochs: 0,
            prototypes_from_patches: false,
            flip_alignment: 0.0,
            input_noise: 0.0,
            input_noise_from_epoch: 0,
        }
    }
}

/// A weight: finite, at least 0 and at most [`maxima::MAX_RATE`].
fn non_negative(name: &'static str, v: f64) -> Result<(), ConfigError> {
    if (0.0..=maxima::MAX_RATE).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            name,
            requirement: "finite, >= 0 and <= 1000",
            got: v,
        })
    }
}

/// A rate: finite, above 0 and at most [`maxima::MAX_RATE`].
fn positive(name: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 && v <= maxima::MAX_RATE {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            name,
            requirement: "finite, > 0 and <= 1000",
            got: v,
        })
    }
}

impl TrainConfig {
    /// Whether the last block of `backbone` trains with the add-on under this schedule.
    pub fn last_block_with_addon_for(&self, backbone: BackboneKind) -> bool {
        self.last_block_with_addon
            .unwrap_or_else(|| backbone.reference_trains_last_block_with_addon())
    }

    /// The data protocol of a new run under this schedule (the reference's unless set).
    pub fn protocol_or_default(&self) -> Protocol {
        self.protocol.unwrap_or_default()
    }

    /// Validates the schedule.
    pub fn check(&self) -> Result<ValidTrainConfig, ConfigError> {
        if self.epochs == 0 {
            return Err(ConfigError::Zero { name: "epochs" });
        }
        if self.batch_size == 0 {
            return Err(ConfigError::Zero { name: "batch_size" });
        }
        check::at_most("", "epochs", self.epochs as u64, maxima::MAX_EPOCHS)?;
        check::at_most(
            "",
            "backbone_warmup_epochs",
            self.backbone_warmup_epochs as u64,
            maxima::MAX_EPOCHS,
        )?;
        check::at_most(
            "",
            "freeze_epochs",
            self.freeze_epochs as u64,
            maxima::MAX_EPOCHS,
        )?;
        check::at_most(
            "",
            "batch_size",
            self.batch_size as u64,
            maxima::MAX_BATCH_SIZE,
        )?;
        let last = self.milestones.last().copied().unwrap_or(0);
        check::at_most("", "milestones", last as u64, maxima::MAX_EPOCHS)?;
        positive("lr", self.lr)?;
        positive("lr_block", self.lr_block)?;
        positive("lr_net", self.lr_net)?;
        positive("adam_eps", self.adam_eps)?;
        positive("gamma", self.gamma)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("flip_alignment", self.flip_alignment)?;
        non_negative("input_noise", self.input_noise)?;
        check::at_most(
            "",
            "input_noise_from_epoch",
            self.input_noise_from_epoch as u64,
            maxima::MAX_EPOCHS,
        )?;
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

    /// Whether the end of 1-based `epoch` re-seeds leaves for classes that need one
    /// ([`TrainConfig::reseed_leaves`]): after 3/8 of the epochs before the first
    /// milestone (every class is misrouted for a while at first) and before the
    /// milestone; without milestones, 70 % of the epochs stand for it. With milestones
    /// the window does not depend on `epochs`, so a run resumed with another `--epochs`
    /// re-seeds as it would have.
    pub fn reseeds_leaves_after(&self, epoch: usize) -> bool {
        let until = match self.0.milestones.first() {
            Some(&m) => m,
            None => self.0.epochs * 7 / 10,
        };
        self.0.reseed_leaves && epoch > until * 3 / 8 && epoch < until
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
    fn input_noise_starts_at_its_epoch() {
        let from_start = TrainConfig {
            input_noise: 0.2,
            ..Default::default()
        };
        assert_eq!(from_start.input_noise_at(1), 0.2);
        let late = TrainConfig {
            input_noise_from_epoch: 29,
            ..from_start
        };
        assert_eq!(
            (late.input_noise_at(28), late.input_noise_at(29)),
            (0.0, 0.2)
        );
        let beyond = TrainConfig {
            input_noise_from_epoch: 100_001,
            ..late
        };
        let err = beyond.check().map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("input_noise_from_epoch"), "{err}");
    }

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
        assert!(!cfg.reseeds_leaves_after(1));
        let reseeding = TrainConfig {
            epochs: 8,
            milestones: vec![6],
            reseed_leaves: true,
            ..Default::default()
        }
        .check()
        .unwrap();
        let r: Vec<bool> = (1..=7).map(|e| reseeding.reseeds_leaves_after(e)).collect();
        assert_eq!(r, vec![false, false, true, true, true, false, false]);
        // The demo's 40 epochs (milestone 28) re-seed after epochs 11 to 27; the scratch
        // recipe's 60 (milestone 42) after 16 to 41.
        let window = |epochs: usize, m: usize| {
            let c = TrainConfig {
                epochs,
                milestones: vec![m],
                reseed_leaves: true,
                ..Default::default()
            }
            .check()
            .unwrap();
            let w: Vec<usize> = (1..=epochs)
                .filter(|&e| c.reseeds_leaves_after(e))
                .collect();
            (w.first().copied(), w.last().copied())
        };
        assert_eq!(window(40, 28), (Some(11), Some(27)));
        assert_eq!(window(60, 42), (Some(16), Some(41)));
        assert_eq!(window(100_000, 42), (Some(16), Some(41)));
        let without_milestones = TrainConfig {
            epochs: 10,
            reseed_leaves: true,
            ..Default::default()
        }
        .check()
        .unwrap();
        assert!(without_milestones.reseeds_leaves_after(6));
        assert!(!without_milestones.reseeds_leaves_after(7));
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

    #[test]
    fn unrecorded_settings_are_left_out_and_resolved_by_backbone() {
        let old = r#"{"epochs":2,"batch_size":4,"lr":0.001,"lr_block":0.001,"lr_net":0.00001,"weight_decay":0.0,"adam_eps":1e-7,"freeze_epochs":1,"milestones":[],"gamma":0.5,"seed":0}"#;
        let cfg: TrainConfig = serde_json::from_str(old).unwrap();
        assert_eq!((cfg.protocol, cfg.last_block_with_addon), (None, None));
        assert_eq!(serde_json::to_string(&cfg).unwrap(), old);
        assert!(cfg.last_block_with_addon_for(BackboneKind::Resnet50Inat));
        assert!(!cfg.last_block_with_addon_for(BackboneKind::Resnet50));
        assert_eq!(cfg.protocol_or_default(), Protocol::Reference);
        let set = TrainConfig {
            protocol: Some(Protocol::Plain),
            last_block_with_addon: Some(true),
            ..cfg
        };
        assert!(set.last_block_with_addon_for(BackboneKind::Resnet18));
        let json = serde_json::to_string(&set).unwrap();
        assert!(json.ends_with(r#""protocol":"plain","last_block_with_addon":true}"#));
    }
}
