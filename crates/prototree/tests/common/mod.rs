//! Setup shared by the facade's integration tests: the committed fixtures and the small,
//! one-epoch training run they start from. Each test binary uses a part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use prototree::candle_core::Device;
use prototree::data::Augmentation;
use prototree::prelude::*;

/// The committed fixtures folder (`fixtures/` at the workspace root).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A small run on the data set at `data`: the small CNN backbone, a depth-2 tree of
/// 8-channel prototypes, one epoch of batches of 8 with the backbone never frozen,
/// 32-pixel images without augmentation, no evaluation during training.
pub fn small_job(data: &Path) -> RunConfig {
    RunConfig {
        data: data.to_path_buf(),
        backbone: BackboneKind::SmallCnn,
        depth: 2,
        proto_dim: 8,
        schedule: TrainConfig {
            epochs: 1,
            batch_size: 8,
            freeze_epochs: 0,
            ..TrainConfig::default()
        },
        image_size: 32,
        augmentation: Augmentation::None,
        crop_to_bbox: false,
        eval_every: 0,
        weights: None,
        quick: false,
        skip_bad_images: false,
        deterministic: false,
        recipe: None,
        ..RunConfig::default()
    }
}

/// Trains `cfg` into the new run directory `out` on the CPU, never interrupted, unobserved.
pub fn run(cfg: &RunConfig, out: &Path) -> prototree::Result<TrainOutcome> {
    train(
        cfg,
        out,
        RunMode::New,
        &Device::Cpu,
        &Interrupter::new(),
        &mut (),
    )
}
