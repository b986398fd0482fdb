//! Which of our backbones a reference checkpoint's `_net.*` tensors belong to.
//!
//! The reference's ResNets (`features/resnet_features.py`) are torchvision ResNets without
//! `avgpool`/`fc`, with torchvision's parameter names, so they map one to one onto our
//! ResNets. `resnet50_inat` is a ResNet-50 whose weights came from the BBN iNaturalist
//! model; the reference renames them to ResNet-50 names when it builds the net, so a saved
//! checkpoint has plain ResNet-50 keys. VGG and DenseNet backbones are rejected by name.
//! A features net with our `SmallCnn` layout (`stages.{i}.conv` / `stages.{i}.bn`) is
//! accepted too: the reference's `ProtoTree` takes any features net.

use prototree_backbone::BackboneKind;

use crate::{Error, Result};

/// The backbone parameters' prefix in the reference's state dict.
pub const NET_PREFIX: &str = "_net.";

/// Detects the backbone from the state-dict keys (`_net.*`) and, when known, the class of
/// the pickled features module.
pub fn detect_backbone(keys: &[String], class: Option<&str>) -> Result<BackboneKind> {
    let net: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(NET_PREFIX))
        .collect();
    let has = |k: &str| net.contains(&k);
    let class_text = class.map(|c| format!(" (class {c})")).unwrap_or_default();
    if net.is_empty() {
        return Err(Error::UnsupportedBackbone {
            backbone: format!("<none>{class_text}"),
            reason: "the checkpoint has no `_net.*` tensors".into(),
        });
    }
    if net.iter().any(|k| k.starts_with("features.denseblock")) {
        return Err(Error::UnsupportedBackbone {
            backbone: format!("DenseNet (reference `densenet121/161/169/201`){class_text}"),
            reason: supported_list(),
        });
    }
    if has("features.0.weight") {
        return Err(Error::UnsupportedBackbone {
            backbone: format!("VGG (reference `vgg11/13/16/19[_bn]`){class_text}"),
            reason: supported_list(),
        });
    }
    if has("stages.0.conv.weight") {
        return Ok(BackboneKind::SmallCnn);
    }
    if has("conv1.weight") && has("layer1.0.conv1.weight") {
        let bottleneck = has("layer1.0.conv3.weight");
        let mut blocks = [0usize; 4];
        for (layer, count) in blocks.iter_mut().enumerate() {
            let prefix = format!("layer{}.", layer + 1);
            *count = net
                .iter()
                .filter_map(|k| k.strip_prefix(prefix.as_str()))
                .filter_map(|rest| rest.split('.').next()?.parse::<usize>().ok())
                .max()
                .map_or(0, |m| m + 1);
        }
        let kind = match (bottleneck, blocks) {
            (false, [2, 2, 2, 2]) => Some(BackboneKind::Resnet18),
            (false, [3, 4, 6, 3]) => Some(BackboneKind::Resnet34),
            (true, [3, 4, 6, 3]) => Some(BackboneKind::Resnet50),
            (true, [3, 4, 23, 3]) => Some(BackboneKind::Resnet101),
            (true, [3, 8, 36, 3]) => Some(BackboneKind::Resnet152),
            _ => None,
        };
        return kind.ok_or_else(|| Error::UnsupportedBackbone {
            backbone: format!(
                "ResNet with {} blocks {blocks:?}{class_text}",
                if bottleneck { "bottleneck" } else { "basic" }
            ),
            reason: supported_list(),
        });
    }
    let mut sample: Vec<&str> = net.iter().take(6).copied().collect();
    sample.sort_unstable();
    Err(Error::UnsupportedBackbone {
        backbone: format!(
            "unknown{class_text} with keys _net.{}",
            sample.join(", _net.")
        ),
        reason: supported_list(),
    })
}

fn supported_list() -> String {
    "supported are the reference's resnet18, resnet34, resnet50, resnet50_inat, resnet101 and \
     resnet152 (and a features net with our small-cnn layout)"
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resnet_keys(bottleneck: bool, blocks: [usize; 4]) -> Vec<String> {
        let mut keys = vec!["_net.conv1.weight".to_string(), "_net.bn1.weight".into()];
        for (l, n) in blocks.iter().enumerate() {
            for b in 0..*n {
                keys.push(format!("_net.layer{}.{b}.conv1.weight", l + 1));
                keys.push(format!("_net.layer{}.{b}.bn1.running_mean", l + 1));
                if bottleneck {
                    keys.push(format!("_net.layer{}.{b}.conv3.weight", l + 1));
                }
            }
            keys.push(format!("_net.layer{}.0.downsample.0.weight", l + 1));
        }
        keys.push("_add_on.0.weight".into());
        keys
    }

    #[test]
    fn resnets_by_block_counts() {
        let cases = [
            (false, [2, 2, 2, 2], BackboneKind::Resnet18),
            (false, [3, 4, 6, 3], BackboneKind::Resnet34),
            (true, [3, 4, 6, 3], BackboneKind::Resnet50),
            (true, [3, 4, 23, 3], BackboneKind::Resnet101),
            (true, [3, 8, 36, 3], BackboneKind::Resnet152),
        ];
        for (b, blocks, kind) in cases {
            assert_eq!(
                detect_backbone(&resnet_keys(b, blocks), None).unwrap(),
                kind
            );
        }
        let e = detect_backbone(&resnet_keys(false, [1, 1, 1, 1]), None).unwrap_err();
        assert!(e.to_string().contains("[1, 1, 1, 1]"), "{e}");
    }

    #[test]
    fn vgg_and_densenet_are_named() {
        let vgg = vec![
            "_net.features.0.weight".to_string(),
            "_net.features.0.bias".into(),
        ];
        let e = detect_backbone(&vgg, Some("features.vgg_features.VGG_features")).unwrap_err();
        assert!(e.to_string().contains("VGG"), "{e}");
        let dense = vec!["_net.features.denseblock1.denselayer1.conv1.weight".to_string()];
        let e = detect_backbone(&dense, None).unwrap_err();
        assert!(e.to_string().contains("DenseNet"), "{e}");
        assert!(detect_backbone(&["_add_on.0.weight".to_string()], None).is_err());
        let small = vec!["_net.stages.0.conv.weight".to_string()];
        assert_eq!(
            detect_backbone(&small, None).unwrap(),
            BackboneKind::SmallCnn
        );
    }
}
