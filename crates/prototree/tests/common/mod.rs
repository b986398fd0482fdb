//! Setup shared by the facade's integration tests: the committed fixtures and the small
//! training job they run. Each test binary uses a part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use prototree::candle_core::Device;
use prototree::data::Augmentation;
use prototree::prelude::*;

/// The committed fixtures folder (`fixtures/` at the workspace root).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The training job of a test: a small-CNN tree of depth 2 with 8-channel prototypes
/// (classes from the data) trained on `data` into `out` with `train`, on 32-pixel images
/// without augmentation, evaluation, initial weights, quick mode, resuming or skipping bad
/// images, on the CPU. Tests change the fields they exercise.
pub fn small_job(data: &Path, out: &Path, train: TrainConfig) -> TrainJob {
    TrainJob {
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        tree: TreeConfig {
            backbone: BackboneKind::SmallCnn,
            depth: 2,
            proto_dim: 8,
            num_classes: 0,
        },
        train,
        image_size: 32,
        augmentation: Augmentation::None,
        crop_to_bbox: false,
        eval_every: 0,
        weights: None,
        quick: false,
        resume: false,
        skip_bad_images: false,
        device: Device::Cpu,
    }
}
