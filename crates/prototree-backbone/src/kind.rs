//! Which backbone a tree uses, as stored in `config.json`.

use serde::{Deserialize, Serialize};

/// The backbone architectures this crate provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    /// A small 4-block CNN for small images (64 px synthetic birds), stride 8.
    SmallCnn,
    /// The same CNN pooling twice: stride 4, receptive field 26 px, for parts a few pixels
    /// wide (parameters identical to `small-cnn`).
    #[serde(rename = "small-cnn-s4")]
    SmallCnnS4,
    /// The small CNN with a 1×1 last convolution: stride 8, receptive field 22 px instead
    /// of 38, so a latent patch describes what lies under its box.
    SmallCnnLocal,
    /// torchvision ResNet-18, cut before global pooling (512 channels, stride 32).
    Resnet18,
    /// torchvision ResNet-34 (512 channels, stride 32).
    Resnet34,
    /// torchvision ResNet-50 (2048 channels, stride 32).
    Resnet50,
    /// ResNet-50 with BBN's iNaturalist-2017 weights, the reference's CUB backbone
    /// (torchvision's architecture; its checkpoint is renamed by [`crate::bbn`]). Its last
    /// block trains with the add-on by default, as in the reference.
    #[serde(rename = "resnet50-inat")]
    Resnet50Inat,
    /// torchvision ResNet-101 (2048 channels, stride 32).
    Resnet101,
    /// torchvision ResNet-152 (2048 channels, stride 32).
    Resnet152,
    /// EfficientNet-Lite0 (`efficientnet-lite-pytorch` layout).
    EfficientnetLite0,
    /// EfficientNet-Lite1.
    EfficientnetLite1,
    /// EfficientNet-Lite2.
    EfficientnetLite2,
    /// EfficientNet-Lite3.
    EfficientnetLite3,
    /// EfficientNet-Lite4.
    EfficientnetLite4,
}

impl BackboneKind {
    /// Every kind, in the order of [`BackboneKind::NAMES`].
    pub const ALL: [BackboneKind; 14] = [
        BackboneKind::SmallCnn,
        BackboneKind::SmallCnnS4,
        BackboneKind::SmallCnnLocal,
        BackboneKind::Resnet18,
        BackboneKind::Resnet34,
        BackboneKind::Resnet50,
        BackboneKind::Resnet50Inat,
        BackboneKind::Resnet101,
        BackboneKind::Resnet152,
        BackboneKind::EfficientnetLite0,
        BackboneKind::EfficientnetLite1,
        BackboneKind::EfficientnetLite2,
        BackboneKind::EfficientnetLite3,
        BackboneKind::EfficientnetLite4,
    ];

    /// The command-line / config names, in the order of [`BackboneKind::ALL`].
    pub const NAMES: [&'static str; 14] = [
        "small-cnn",
        "small-cnn-s4",
        "small-cnn-local",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet50-inat",
        "resnet101",
        "resnet152",
        "efficientnet-lite0",
        "efficientnet-lite1",
        "efficientnet-lite2",
        "efficientnet-lite3",
        "efficientnet-lite4",
    ];

    /// The command-line / config name of this kind.
    pub fn name(self) -> &'static str {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::NAMES[i]
    }

    /// Whether the reference trains the backbone's last block with the add-on (at
    /// `lr_block`, never frozen) rather than with the rest of the backbone: only for the
    /// iNaturalist ResNet-50 (spec §2.2; the reference also does so for ResNet-50 on
    /// Stanford Cars, which `--last-block-with-addon` reproduces).
    pub fn reference_trains_last_block_with_addon(self) -> bool {
        self == BackboneKind::Resnet50Inat
    }

    /// The per-channel input normalisation `(mean, std)` the architecture's weights expect.
    pub fn normalization(self) -> ([f32; 3], [f32; 3]) {
        match self {
            BackboneKind::EfficientnetLite0
            | BackboneKind::EfficientnetLite1
            | BackboneKind::EfficientnetLite2
            | BackboneKind::EfficientnetLite3
            | BackboneKind::EfficientnetLite4 => ([0.5; 3], [0.5; 3]),
            _ => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        }
    }
}

impl std::fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BackboneKind {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        Self::NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| Self::ALL[i])
            .ok_or_else(|| crate::Error::UnknownBackbone(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in BackboneKind::ALL {
            assert_eq!(kind.name().parse::<BackboneKind>().unwrap(), kind);
        }
        assert!("resnet19".parse::<BackboneKind>().is_err());
        let json = serde_json::to_string(&BackboneKind::Resnet50Inat).unwrap();
        assert_eq!(json, "\"resnet50-inat\"");
        assert_eq!(BackboneKind::Resnet50Inat.name(), "resnet50-inat");
        let json = serde_json::to_string(&BackboneKind::SmallCnnS4).unwrap();
        assert_eq!(json, "\"small-cnn-s4\"");
    }
}
