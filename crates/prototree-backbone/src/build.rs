//! Building a backbone of a given kind.

use candle_nn::VarBuilder;

use crate::{Backbone, BackboneKind, EfficientNetLite, ResNet, Result, SmallCnn};

/// Builds the backbone `kind` with its parameters under `vb`.
pub fn build_backbone(kind: BackboneKind, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    match kind {
        BackboneKind::SmallCnn => Ok(Box::new(SmallCnn::new(vb)?)),
        BackboneKind::SmallCnnS4 => Ok(Box::new(SmallCnn::with_stride(4, vb)?)),
        BackboneKind::SmallCnnLocal => Ok(Box::new(SmallCnn::local(vb)?)),
        BackboneKind::Resnet18
        | BackboneKind::Resnet34
        | BackboneKind::Resnet50
        | BackboneKind::Resnet50Inat
        | BackboneKind::Resnet101
        | BackboneKind::Resnet152 => Ok(Box::new(ResNet::new(kind, vb)?)),
        BackboneKind::EfficientnetLite0
        | BackboneKind::EfficientnetLite1
        | BackboneKind::EfficientnetLite2
        | BackboneKind::EfficientnetLite3
        | BackboneKind::EfficientnetLite4 => Ok(Box::new(EfficientNetLite::new(kind, vb)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarMap;

    #[test]
    fn builds_every_kind() -> anyhow::Result<()> {
        for kind in BackboneKind::ALL {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let net = build_backbone(kind, vb)?;
            assert_eq!(net.kind(), kind);
            let channels = match kind {
                BackboneKind::SmallCnn | BackboneKind::SmallCnnS4 | BackboneKind::SmallCnnLocal => {
                    128
                }
                BackboneKind::Resnet18 | BackboneKind::Resnet34 => 512,
                BackboneKind::Resnet50
                | BackboneKind::Resnet50Inat
                | BackboneKind::Resnet101
                | BackboneKind::Resnet152 => 2048,
                _ => 1280,
            };
            assert_eq!(net.out_channels(), channels, "{kind}");
            // Every last-block prefix names parameters of the backbone.
            let names: Vec<String> = varmap
                .data()
                .lock()
                .map_err(|_| anyhow::anyhow!("lock"))?
                .keys()
                .cloned()
                .collect();
            for prefix in net.last_block_prefixes() {
                let dotted = format!("{prefix}.");
                assert!(
                    names.iter().any(|n| n.starts_with(&dotted)),
                    "{kind}: no parameter under {prefix}"
                );
            }
            // The cheap ones run: stride 32 (small CNN: 8 or 4).
            if matches!(
                kind,
                BackboneKind::SmallCnn
                    | BackboneKind::SmallCnnS4
                    | BackboneKind::SmallCnnLocal
                    | BackboneKind::Resnet18
                    | BackboneKind::EfficientnetLite0
            ) {
                let x = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu)?;
                let side = match kind {
                    BackboneKind::SmallCnn | BackboneKind::SmallCnnLocal => 8,
                    BackboneKind::SmallCnnS4 => 16,
                    _ => 2,
                };
                assert_eq!(net.features(&x, false)?.dims(), &[1, channels, side, side]);
            }
        }
        Ok(())
    }

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync>() {}
        check::<crate::ResNet>();
        check::<crate::EfficientNetLite>();
        check::<Box<dyn Backbone>>();
    }
}
