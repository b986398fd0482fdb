//! Building a backbone of a given kind.

use candle_nn::VarBuilder;

use crate::{Backbone, BackboneKind, EfficientNetLite, ResNet, Result, SmallCnn};

/// Builds the backbone `kind` with its parameters under `vb`.
pub fn build_backbone(kind: BackboneKind, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    match kind {
        BackboneKind::SmallCnn => Ok(Box::new(SmallCnn::new(vb)?)),
        BackboneKind::Resnet18
        | BackboneKind::Resnet34
        | BackboneKind::Resnet50
        | BackboneKind::Resnet101
        | BackboneKind::Resnet152 => Ok(Box::new(ResNet::new(kind, vb)?)),
        BackboneKind::EfficientnetLite0
        | BackboneKind::EfficientnetLite1
        | BackboneKind::EfficientnetLite2
        | BackboneKind::EfficientnetLite3
        | BackboneKind::EfficientnetLite4 => Ok(Box::new(EfficientNetLite::new(kind, vb)?)),
    }
}
