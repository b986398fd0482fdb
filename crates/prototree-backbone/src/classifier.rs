//! A backbone with its ImageNet classifier (global average pooling + linear layer), built
//! from one pretrained weight file, to check weights and preprocessing on real photos.
//!
//! Prototype trees use the backbone only; the classifier (`fc` of torchvision ResNets,
//! `_fc` of `efficientnet-lite-pytorch`) is what [`crate::load_weights`] skips as an
//! expected extra.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};

use crate::{build_backbone, load_weights_from, Backbone, BackboneKind};
use crate::{Error, Result};

/// The evaluation preprocessing an architecture's ImageNet weights were measured with:
/// resize the shorter side to `resize`, centre-crop `crop × crop`, scale to `[0, 1]` and
/// normalise with [`BackboneKind::normalization`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalTransform {
    /// Shorter side after resizing.
    pub resize: u32,
    /// Side of the centre crop.
    pub crop: u32,
    /// Bicubic resizing (TensorFlow's EfficientNet evaluation); bilinear otherwise
    /// (torchvision's).
    pub bicubic: bool,
}

impl EvalTransform {
    /// torchvision's ResNet evaluation (resize 256, crop 224, bilinear); for
    /// EfficientNet-Lite the TensorFlow reference's (crop the native resolution `r` out of
    /// the image resized to `r + 32`, bicubic: 256 / 224 for Lite0, 332 / 300 for Lite4).
    pub fn for_kind(kind: BackboneKind) -> Self {
        match crate::efficientnet_lite::lite_params(kind) {
            Some((_, _, res)) => Self {
                resize: res + 32,
                crop: res,
                bicubic: true,
            },
            None => Self {
                resize: 256,
                crop: 224,
                bicubic: false,
            },
        }
    }
}

/// A backbone, global average pooling and a linear classifier.
pub struct ImageNetClassifier {
    backbone: Box<dyn Backbone>,
    // Kept so the backbone's variables stay owned alongside it.
    _varmap: Option<VarMap>,
    fc_weight: Tensor,
    fc_bias: Tensor,
}

impl std::fmt::Debug for ImageNetClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageNetClassifier")
            .field("kind", &self.backbone.kind())
            .field("num_classes", &self.num_classes())
            .finish()
    }
}

impl ImageNetClassifier {
    /// Builds the backbone `kind` on `device` and fills it and the classifier from the weight
    /// file `path` (`.safetensors` or a `.pth` / `.pt` / `.bin` of either `torch.save` format).
    pub fn from_file(kind: BackboneKind, path: &Path, device: &Device) -> Result<Self> {
        let state = prototree_torch::read_state_dict(path)?;
        Self::from_state_dict(kind, &state, path, device)
    }

    /// [`ImageNetClassifier::from_file`] from tensors already read (e.g. by another
    /// reader); `source` names them in errors. The classifier is `fc.{weight,bias}` or
    /// `_fc.{weight,bias}`; every other tensor must fit the backbone (see
    /// [`crate::load_weights`]).
    pub fn from_state_dict(
        kind: BackboneKind,
        state: &HashMap<String, Tensor>,
        source: &Path,
        device: &Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let backbone = build_backbone(kind, vb)?;
        load_weights_from(&varmap, "", state, source, kind.name())?;
        let mismatch = |details: String| Error::WeightMismatch {
            path: source.to_path_buf(),
            arch: kind.name().to_string(),
            details,
        };
        let (weight, bias) = ["fc", "_fc"]
            .iter()
            .find_map(|p| {
                Some((
                    state.get(&format!("{p}.weight"))?,
                    state.get(&format!("{p}.bias"))?,
                ))
            })
            .ok_or_else(|| mismatch("no classifier (`fc` or `_fc` weight and bias)".into()))?;
        let to_dev =
            |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(DType::F32)?.to_device(device)?) };
        let mut this = Self::new(backbone, to_dev(weight)?, to_dev(bias)?)
            .map_err(|e| mismatch(e.to_string()))?;
        this._varmap = Some(varmap);
        Ok(this)
    }

    /// A classifier on top of an already built `backbone`: `fc_weight` `(k, c)` and
    /// `fc_bias` `(k,)` with `c` = [`Backbone::out_channels`].
    pub fn new(backbone: Box<dyn Backbone>, fc_weight: Tensor, fc_bias: Tensor) -> Result<Self> {
        let c = backbone.out_channels();
        let ok = match (fc_weight.dims(), fc_bias.dims()) {
            ([k, wc], [kb]) => *wc == c && kb == k,
            _ => false,
        };
        if !ok {
            return Err(Error::ClassifierShape {
                weight: fc_weight.dims().to_vec(),
                bias: fc_bias.dims().to_vec(),
                channels: c,
            });
        }
        Ok(Self {
            backbone,
            _varmap: None,
            fc_weight,
            fc_bias,
        })
    }

    /// The feature extractor.
    pub fn backbone(&self) -> &dyn Backbone {
        self.backbone.as_ref()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.fc_bias.dims().first().copied().unwrap_or(0)
    }

    /// Class scores (eval-mode BatchNorm).
    ///
    /// # Shapes
    /// - `x`: `(b, 3, h, w)`, normalised with [`BackboneKind::normalization`]
    /// - returns `(b, k)` logits
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let pooled = self.backbone.features(x, false)?.mean((2, 3))?;
        Ok(pooled
            .matmul(&self.fc_weight.t()?)?
            .broadcast_add(&self.fc_bias)?)
    }

    /// Class probabilities (softmax of [`ImageNetClassifier::forward`]), `(b, k)`.
    pub fn probabilities(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax(&self.forward(x)?, D::Minus1)?)
    }

    /// The `k` most probable classes of every image, as `(class index, probability)`,
    /// most probable first.
    pub fn top_k(&self, x: &Tensor, k: usize) -> Result<Vec<Vec<(usize, f32)>>> {
        let probs = self.probabilities(x)?.to_vec2::<f32>()?;
        Ok(probs
            .into_iter()
            .map(|p| {
                let mut order: Vec<usize> = (0..p.len()).collect();
                order.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
                order.into_iter().take(k).map(|i| (i, p[i])).collect()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync>() {}
        check::<ImageNetClassifier>();
        check::<EvalTransform>();
    }

    #[test]
    fn eval_transforms() {
        let t = EvalTransform::for_kind(BackboneKind::Resnet50);
        assert_eq!((t.resize, t.crop, t.bicubic), (256, 224, false));
        let t = EvalTransform::for_kind(BackboneKind::EfficientnetLite0);
        assert_eq!((t.resize, t.crop, t.bicubic), (256, 224, true));
        let t = EvalTransform::for_kind(BackboneKind::EfficientnetLite4);
        assert_eq!((t.resize, t.crop), (332, 300));
    }

    #[test]
    fn wrong_classifier_shapes_are_errors() -> anyhow::Result<()> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let backbone = build_backbone(BackboneKind::SmallCnn, vb)?;
        let c = backbone.out_channels();
        let w = Tensor::zeros((4, c + 1), DType::F32, &Device::Cpu)?;
        let b = Tensor::zeros(4, DType::F32, &Device::Cpu)?;
        let err = ImageNetClassifier::new(backbone, w, b).unwrap_err();
        assert!(matches!(err, Error::ClassifierShape { .. }), "{err}");
        Ok(())
    }
}
