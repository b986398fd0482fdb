//! Training recipes: the settings a new run starts from, before its configuration file
//! and flags.
//!
//! The paper's recipe is made for a pretrained backbone: the backbone learns a hundred
//! times slower than the head and stays frozen for the first epochs. A backbone that
//! starts from random weights barely trains that way (the small CNN reached 61 % on
//! scikit-learn's digits with it); it needs the head's learning rate from the first step.
//! [`Recipe::for_weights`] picks by whether pretrained weights are given.

use serde::{Deserialize, Serialize};

use prototree_backbone::BackboneKind;
use prototree_data::{Augmentation, Protocol};
use prototree_tree::TrainConfig;

use crate::run_config::RunConfig;

/// Which preset a run starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// The reference's (paper's) recipe, for a pretrained backbone: depth 9, prototypes
    /// of 256, 224 px, 100 epochs of 64, learning rates 1e-3 (prototypes, add-on) and
    /// 1e-5 (backbone), 2 frozen epochs, the reference's augmentation.
    Reference,
    /// For a backbone trained from random weights (the small CNN): depth 5, prototypes of
    /// 64, 64 px, 60 epochs of 32, every learning rate 4e-3 from the first step, decays
    /// by half after 70 % and 85 % of the epochs, random translations as augmentation, the plain data
    /// protocol (each training image once), ten backbone warm-up epochs, prototypes from
    /// patches, leaf re-seeding, and up to three attempts chosen on a 10 % validation
    /// split (stopping at 97 %, or once an attempt gains less than 2 points).
    Scratch,
}

impl Recipe {
    /// Every recipe's name, for help texts and errors.
    pub const NAMES: [&'static str; 2] = ["reference", "scratch"];

    /// The recipe for a run with (`true`) or without pretrained backbone weights.
    pub fn for_weights(pretrained: bool) -> Self {
        if pretrained {
            Recipe::Reference
        } else {
            Recipe::Scratch
        }
    }

    /// The recipe's name (`reference`, `scratch`).
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Reference => "reference",
            Recipe::Scratch => "scratch",
        }
    }

    /// The recipe named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "reference" => Some(Recipe::Reference),
            "scratch" => Some(Recipe::Scratch),
            _ => None,
        }
    }

    /// The configuration a run of this recipe starts from (no data set yet).
    pub fn preset(self) -> RunConfig {
        let base = RunConfig {
            recipe: Some(self),
            ..RunConfig::default()
        };
        match self {
            Recipe::Reference => base,
            Recipe::Scratch => RunConfig {
                backbone: BackboneKind::SmallCnn,
                depth: 5,
                proto_dim: 64,
                image_size: 64,
                // Translations only: on digits (no mirror symmetry) flips cost 6 points
                // (84.1 % vs 90.0 %); on the synthetic birds both reach 99 % (docs/results.md).
                augmentation: Augmentation::Shift,
                // Some seeds still end a few points low (a pair of classes that differ
                // in their smallest parts never told apart): up to three attempts on a
                // validation split removed every such run of the stall sweep; the bar
                // and the 2-point gain stop keep a run whose first attempt lands, or whose
                // data allow no more, from training three (docs/results.md).
                attempts: 3,
                stop_at_validation: Some(0.97),
                min_attempt_gain: Some(0.02),
                schedule: TrainConfig {
                    epochs: 60,
                    batch_size: 32,
                    // 4e-3 rather than 2e-3: with translations the tree underfits at
                    // 2e-3 (digits 90.0 %, 95.8 % train); 4e-3 gives 95.5 % (docs/results.md).
                    lr: 4e-3,
                    lr_block: 4e-3,
                    lr_net: 4e-3,
                    freeze_epochs: 0,
                    milestones: vec![42, 51],
                    gamma: 0.5,
                    // Each training image once: the reference's five views per image
                    // belong to its CUB recipe.
                    protocol: Some(Protocol::Plain),
                    // A from-scratch tree stalls with shared leaves on some seeds
                    // (docs/results.md, "Training that lands"); re-seeding repairs it.
                    reseed_leaves: true,
                    // Repairs that rewrite high nodes for one class re-route the others
                    // and stalled 4 of 10 runs on 20 classes; keeping their routes landed
                    // all four (docs/results.md, "Training that lands").
                    repair_keeps_routes: true,
                    // A backbone trained from random weights only through the tree
                    // learns slowly and the tree stalls meanwhile: ten epochs as a plain
                    // classifier first, then prototypes that are real patches
                    // (docs/results.md, "Training that lands").
                    backbone_warmup_epochs: 10,
                    prototypes_from_patches: true,
                    ..TrainConfig::default()
                },
                ..base
            },
        }
    }
}

impl std::fmt::Display for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_names() {
        assert_eq!(Recipe::for_weights(true), Recipe::Reference);
        assert_eq!(Recipe::for_weights(false), Recipe::Scratch);
        for name in Recipe::NAMES {
            let r = Recipe::from_name(name).map(Recipe::name);
            assert_eq!(r, Some(name));
        }
        assert_eq!(Recipe::from_name("fast"), None);
        let reference = Recipe::Reference.preset();
        assert_eq!(reference.schedule, TrainConfig::default());
        let scratch = Recipe::Scratch.preset();
        assert_eq!(scratch.schedule.freeze_epochs, 0);
        assert_eq!(scratch.schedule.lr_net, scratch.schedule.lr);
        assert!(scratch.schedule.check().is_ok());
        assert_eq!(
            (scratch.attempts, reference.attempts),
            (3, 1),
            "the scratch recipe chooses among attempts, the reference's trains once"
        );
    }
}
