//! Estimates of the memory a model and a batch of it need, checked against the memory
//! budget of [`prototree_limits::memory`] before anything is allocated.
//!
//! The estimates are deliberately rough (within a small factor of what candle uses, on
//! the generous side for what must be refused): their purpose is to turn a hostile or
//! mistyped size (a depth of 16 with prototypes of 16 384, an input side of 4096 with a
//! batch of 4096) into an error naming the field, not to predict a peak to the megabyte.

use prototree_backbone::BackboneKind;
use prototree_limits::{memory, LimitError};

use crate::config::ValidTreeConfig;

/// Bytes of an `f32`.
const F32: u64 = 4;
/// Channels of the backbone's feature map, at most (ResNet-50 and deeper: 2048).
const MAX_BACKBONE_CHANNELS: u64 = 2048;
/// Floats of activations per input pixel held during inference (the widest layers of a
/// forward pass, at their resolutions).
const INFERENCE_FLOATS_PER_PIXEL: u64 = 64;
/// Floats of activations per input pixel kept for the backward pass in training.
const TRAINING_FLOATS_PER_PIXEL: u64 = 256;

/// Parameters of a backbone (torchvision's counts, classifier excluded, rounded up).
pub fn backbone_parameters(kind: BackboneKind) -> u64 {
    match kind {
        BackboneKind::SmallCnn | BackboneKind::SmallCnnS4 | BackboneKind::SmallCnnLocal => {
            1_000_000
        }
        BackboneKind::Resnet18 => 11_200_000,
        BackboneKind::Resnet34 => 21_300_000,
        BackboneKind::Resnet50 | BackboneKind::Resnet50Inat => 23_600_000,
        BackboneKind::Resnet101 => 42_600_000,
        BackboneKind::Resnet152 => 58_200_000,
        BackboneKind::EfficientnetLite0 => 3_500_000,
        BackboneKind::EfficientnetLite1 => 4_300_000,
        BackboneKind::EfficientnetLite2 => 4_900_000,
        BackboneKind::EfficientnetLite3 => 6_300_000,
        BackboneKind::EfficientnetLite4 => 11_800_000,
    }
}

/// Downsampling of a backbone's feature map.
fn latent_stride(kind: BackboneKind) -> u64 {
    match kind {
        BackboneKind::SmallCnn | BackboneKind::SmallCnnLocal => 8,
        BackboneKind::SmallCnnS4 => 4,
        _ => 32,
    }
}

/// Bytes of the model's parameters: backbone, add-on, prototypes and leaves.
pub fn model_bytes(cfg: &ValidTreeConfig) -> u64 {
    let d = cfg.proto_dim() as u64;
    let params = backbone_parameters(cfg.backbone())
        .saturating_add(MAX_BACKBONE_CHANNELS.saturating_mul(d))
        .saturating_add((cfg.num_prototypes() as u64).saturating_mul(d))
        .saturating_add((cfg.num_leaves() as u64).saturating_mul(cfg.num_classes() as u64));
    params.saturating_mul(F32)
}

/// Bytes a batch of `batch` images of side `image_size` needs on top of the model:
/// input, activations (`floats_per_pixel` per input pixel), latent map and the distances
/// to every prototype.
fn batch_bytes(cfg: &ValidTreeConfig, image_size: u32, batch: usize, floats_per_pixel: u64) -> u64 {
    let s = u64::from(image_size);
    let b = batch as u64;
    let pixels = b.saturating_mul(s).saturating_mul(s);
    let latent_side = s.div_ceil(latent_stride(cfg.backbone())).max(1);
    let latent = b.saturating_mul(latent_side).saturating_mul(latent_side);
    let distances = latent.saturating_mul(cfg.num_prototypes() as u64);
    let add_on = latent.saturating_mul(cfg.proto_dim() as u64);
    pixels
        .saturating_mul(3 + floats_per_pixel)
        .saturating_add(distances.saturating_mul(2))
        .saturating_add(add_on)
        .saturating_mul(F32)
}

/// Refuses a model of `cfg` that does not fit the memory budget; `file` names where the
/// configuration came from.
pub fn check_model(file: &str, cfg: &ValidTreeConfig) -> Result<(), LimitError> {
    memory::check(
        file,
        "tree (backbone, depth, proto_dim, num_classes)",
        model_bytes(cfg),
    )
}

/// Refuses inference on batches of `batch` images of side `image_size` that, with the
/// model, do not fit the memory budget.
pub fn check_inference(
    file: &str,
    cfg: &ValidTreeConfig,
    image_size: u32,
    batch: usize,
) -> Result<(), LimitError> {
    let total = model_bytes(cfg).saturating_add(batch_bytes(
        cfg,
        image_size,
        batch,
        INFERENCE_FLOATS_PER_PIXEL,
    ));
    memory::check(
        file,
        &format!("model with a batch of {batch} images of {image_size} × {image_size}"),
        total,
    )
}

/// Refuses training with batches of `batch` images of side `image_size` that, with the
/// model, its gradients and the optimiser's moments, do not fit the memory budget.
pub fn check_training(
    cfg: &ValidTreeConfig,
    image_size: u32,
    batch: usize,
) -> Result<(), LimitError> {
    let total = model_bytes(cfg)
        .saturating_mul(4)
        .saturating_add(batch_bytes(
            cfg,
            image_size,
            batch,
            TRAINING_FLOATS_PER_PIXEL,
        ));
    memory::check(
        "",
        &format!("training with batches of {batch} images of {image_size} × {image_size}"),
        total,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TreeConfig;

    #[test]
    fn the_reference_configuration_is_modest_and_hostile_ones_are_huge() {
        let reference = TreeConfig::default().check().unwrap();
        // ResNet-50, depth 9, D = 256, 200 classes: ~100 MB of parameters.
        assert!(model_bytes(&reference) < 200 << 20);
        // A batch of 64 at 224 px trains within a few GB.
        let b = batch_bytes(&reference, 224, 64, TRAINING_FLOATS_PER_PIXEL);
        assert!(b < 6 << 30, "{b}");
        // The largest input side with the largest batch is terabytes.
        let b = batch_bytes(&reference, 4096, 4096, INFERENCE_FLOATS_PER_PIXEL);
        assert!(b > 1 << 40, "{b}");
    }
}
