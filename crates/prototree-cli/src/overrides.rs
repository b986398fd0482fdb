//! The run-configuration flags of `prototree train` and `prototree ensemble train`: one
//! struct of optional settings, merged into a [`RunConfig`] by [`RunOverrides::apply`].

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use prototree::backbone::BackboneKind;
use prototree::data::{Augmentation, Protocol};
use prototree::prelude::{Recipe, RunConfig};

/// Settings given on the command line; each one given replaces the configuration's.
#[derive(Args, Debug, Default, Clone)]
pub struct RunOverrides {
    /// Data set directory (CUB-200-2011 or ImageFolder layout).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Backbone.
    #[arg(long)]
    pub backbone: Option<BackboneKind>,
    /// Pretrained backbone weights (.pth or .safetensors).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Tree depth.
    #[arg(long)]
    pub depth: Option<usize>,
    /// Prototype length (add-on channels).
    #[arg(long)]
    pub proto_dim: Option<usize>,
    /// Input side in pixels.
    #[arg(long)]
    pub image_size: Option<u32>,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Prototype learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Add-on / last-block learning rate.
    #[arg(long)]
    pub lr_block: Option<f64>,
    /// Backbone learning rate.
    #[arg(long)]
    pub lr_net: Option<f64>,
    /// Epochs with the backbone frozen.
    #[arg(long)]
    pub freeze_epochs: Option<usize>,
    /// Comma-separated epochs after which learning rates decay by --gamma.
    #[arg(long, value_delimiter = ',')]
    pub milestones: Option<Vec<usize>>,
    /// Learning-rate decay at milestones.
    #[arg(long)]
    pub gamma: Option<f64>,
    /// AdamW weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Augmentation: none, flip, shift (translation only) or reference.
    #[arg(long, value_parser = parse_augmentation)]
    pub augment: Option<Augmentation>,
    /// Crop images to their bounding boxes (training and test; plain protocol only).
    #[arg(long)]
    pub crop_bbox: bool,
    /// Data protocol: reference (the reference's CUB preparation: each training image
    /// whole and as four corner crops around its box, projection on box crops, whole test
    /// images; the default of new runs with the reference recipe) or plain (each image
    /// once, whole or with --crop-bbox cropped).
    #[arg(long, value_parser = parse_protocol)]
    pub protocol: Option<Protocol>,
    /// Train the backbone's last block with the add-on (at --lr-block, never frozen)
    /// instead of with the rest of the backbone. Default: as the reference, only for
    /// resnet50-inat.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub last_block_with_addon: Option<bool>,
    /// Give a class without a leaf of its own a spare leaf at the end of each epoch before
    /// the first milestone (the stall repair; docs/training.md). Default: on in the scratch
    /// recipe, off in the reference recipe.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub reseed_leaves: Option<bool>,
    /// With re-seeding: choose each route repair's patch so that the other classes passing
    /// the node keep their side (docs/training.md). Default: on in the scratch recipe.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub repair_keeps_routes: Option<bool>,
    /// Train the backbone with a temporary linear classifier for N epochs before the
    /// tree's first epoch (at --lr-net; not counted in --epochs; docs/training.md).
    /// Default: 10 in the scratch recipe, 0 in the reference recipe.
    #[arg(long, value_name = "N")]
    pub warmup_epochs: Option<usize>,
    /// Start the prototypes as latent patches of training images (after the warm-up)
    /// instead of random vectors. Default: on in the scratch recipe, off in the reference
    /// recipe.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub prototypes_from_patches: Option<bool>,
    /// Weight of the flip-alignment term: each prototype's attention over the feature map
    /// should follow the image's mirror image (docs/training.md; default 0, ProtoTree's
    /// objective).
    #[arg(long, value_name = "WEIGHT")]
    pub flip_alignment: Option<f64>,
    /// Gaussian noise of this standard deviation on the normalised training images,
    /// clipped at 1.25 SIGMA (docs/training.md; default 0: none).
    #[arg(long, value_name = "SIGMA")]
    pub input_noise: Option<f64>,
    /// With --input-noise: the first epoch trained with it (default: from the start).
    #[arg(long, value_name = "EPOCH")]
    pub input_noise_from_epoch: Option<usize>,
    /// Evaluate on the test split every N epochs (0: only at the end).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train up to N attempts (seeds SEED, SEED+1, …) on the training images less a
    /// validation split and keep the one most accurate on it (docs/training.md). Default:
    /// 3 with the scratch recipe; 1 (one run on all training images) with the reference's.
    #[arg(long, value_name = "N")]
    pub attempts: Option<usize>,
    /// With --attempts: the share of each class's training images held out to choose
    /// between attempts (default 0.1).
    #[arg(long, value_name = "SHARE")]
    pub validation_share: Option<f64>,
    /// With --attempts: stop at the first attempt whose validation accuracy reaches ACC
    /// (a fraction; the scratch recipe's default 0.97; none: every attempt trains).
    #[arg(long, value_name = "ACC")]
    pub stop_at_validation: Option<f64>,
    /// With --attempts: stop once an attempt raises the best validation accuracy of the
    /// attempts before it by less than GAIN (a fraction; the scratch recipe's default
    /// 0.02: a new seed no longer helps).
    #[arg(long, value_name = "GAIN")]
    pub min_attempt_gain: Option<f64>,
    /// Check the configuration end to end on about 1% of the data, one epoch per phase.
    #[arg(long)]
    pub quick: bool,
    /// Leave out unreadable images (counted, listed in RUN/skipped_images.txt) instead of failing.
    #[arg(long)]
    pub skip_bad_images: bool,
    /// The same model on any number of threads (reductions in a fixed order; slightly slower).
    #[arg(long)]
    pub deterministic: bool,
    /// The preset a new run starts from, before --config and the flags: reference (the
    /// paper's, for pretrained weights) or scratch (for random initial weights). Default:
    /// reference with --weights, else scratch.
    #[arg(long, value_parser = parse_recipe)]
    pub recipe: Option<Recipe>,
}

fn parse_recipe(s: &str) -> Result<Recipe> {
    Recipe::from_name(s).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown recipe `{s}` (expected {})",
            Recipe::NAMES.join(" or ")
        )
    })
}

fn parse_protocol(s: &str) -> Result<Protocol> {
    Ok(s.parse()?)
}

/// An augmentation by its run.toml name (`none`, `flip`, `shift`, `reference`).
pub(crate) fn parse_augmentation(s: &str) -> Result<Augmentation> {
    Ok(s.parse()?)
}

/// `target = value` for every given value.
fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *target = v.clone();
    }
}

impl RunOverrides {
    /// Replaces the settings of `cfg` that were given.
    pub fn apply(&self, cfg: &mut RunConfig) {
        set(&mut cfg.data, &self.data);
        set(&mut cfg.backbone, &self.backbone);
        if self.weights.is_some() {
            cfg.weights.clone_from(&self.weights);
        }
        set(&mut cfg.depth, &self.depth);
        set(&mut cfg.proto_dim, &self.proto_dim);
        set(&mut cfg.image_size, &self.image_size);
        set(&mut cfg.augmentation, &self.augment);
        set(&mut cfg.eval_every, &self.eval_every);
        cfg.crop_to_bbox |= self.crop_bbox;
        cfg.skip_bad_images |= self.skip_bad_images;
        cfg.deterministic |= self.deterministic;
        cfg.quick |= self.quick;
        set(&mut cfg.attempts, &self.attempts);
        set(&mut cfg.validation_share, &self.validation_share);
        if self.stop_at_validation.is_some() {
            cfg.stop_at_validation = self.stop_at_validation;
        }
        if self.min_attempt_gain.is_some() {
            cfg.min_attempt_gain = self.min_attempt_gain;
        }
        let s = &mut cfg.schedule;
        set(&mut s.epochs, &self.epochs);
        set(&mut s.batch_size, &self.batch_size);
        set(&mut s.lr, &self.lr);
        set(&mut s.lr_block, &self.lr_block);
        set(&mut s.lr_net, &self.lr_net);
        set(&mut s.freeze_epochs, &self.freeze_epochs);
        set(&mut s.milestones, &self.milestones);
        set(&mut s.gamma, &self.gamma);
        set(&mut s.weight_decay, &self.weight_decay);
        set(&mut s.seed, &self.seed);
        if self.protocol.is_some() {
            s.protocol = self.protocol;
        }
        if self.last_block_with_addon.is_some() {
            s.last_block_with_addon = self.last_block_with_addon;
        }
        set(&mut s.reseed_leaves, &self.reseed_leaves);
        set(&mut s.repair_keeps_routes, &self.repair_keeps_routes);
        set(&mut s.backbone_warmup_epochs, &self.warmup_epochs);
        set(
            &mut s.prototypes_from_patches,
            &self.prototypes_from_patches,
        );
        set(&mut s.flip_alignment, &self.flip_alignment);
        set(&mut s.input_noise, &self.input_noise);
        set(&mut s.input_noise_from_epoch, &self.input_noise_from_epoch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_settings_replace_the_configuration() {
        let mut cfg = RunConfig::default();
        let o = RunOverrides {
            depth: Some(3),
            milestones: Some(vec![2, 4]),
            augment: Some(Augmentation::Flip),
            crop_bbox: true,
            ..RunOverrides::default()
        };
        o.apply(&mut cfg);
        assert_eq!(
            (cfg.depth, cfg.schedule.milestones.clone()),
            (3, vec![2, 4])
        );
        assert_eq!(cfg.augmentation, Augmentation::Flip);
        assert!(cfg.crop_to_bbox && !cfg.quick);
        assert_eq!(cfg.proto_dim, RunConfig::default().proto_dim);
    }

    #[test]
    fn the_start_of_a_run_can_be_changed() {
        let mut cfg = prototree::prelude::Recipe::Scratch.preset();
        assert_eq!(cfg.schedule.backbone_warmup_epochs, 10);
        assert!(cfg.schedule.prototypes_from_patches);
        RunOverrides {
            warmup_epochs: Some(0),
            prototypes_from_patches: Some(false),
            ..RunOverrides::default()
        }
        .apply(&mut cfg);
        assert_eq!(cfg.schedule.backbone_warmup_epochs, 0);
        assert!(!cfg.schedule.prototypes_from_patches);
        let reference = prototree::prelude::Recipe::Reference.preset();
        assert_eq!(reference.schedule.backbone_warmup_epochs, 0);
        assert!(!reference.schedule.prototypes_from_patches);
    }

    #[test]
    fn route_repairs_can_keep_the_other_classes_routes() {
        let mut cfg = prototree::prelude::Recipe::Scratch.preset();
        assert!(cfg.schedule.reseed_leaves && cfg.schedule.repair_keeps_routes);
        assert!(cfg.recipe_summary().contains("keep other classes' routes"));
        RunOverrides {
            repair_keeps_routes: Some(false),
            ..RunOverrides::default()
        }
        .apply(&mut cfg);
        assert!(!cfg.schedule.repair_keeps_routes);
        assert!(
            !prototree::prelude::Recipe::Reference
                .preset()
                .schedule
                .repair_keeps_routes
        );
    }
}
