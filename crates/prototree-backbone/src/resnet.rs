//! ResNet-18/34/50/101/152 with torchvision's module layout and state_dict names
//! (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`, …), cut before global
//! pooling as the ProtoTree reference cuts it: the output of `layer4` (stride 32).
//!
//! Bottleneck blocks put the stride on the 3×3 convolution (torchvision's "v1.5").
//! Computation runs channels-last with [`conv2d_nhwc`], whose backward pass is cheap on
//! the CPU; the weights keep PyTorch's layout, so torchvision files load unchanged.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::batch_norm::{Activation, BatchNormNhwc};
use crate::{Backbone, BackboneKind, Error, Result};
use prototree_ops::{add_relu, conv2d_nhwc, max_pool_nhwc};

/// A convolution without bias followed by BatchNorm (PyTorch eps 1e-5).
#[derive(Debug, Clone)]
struct ConvBn {
    weight: Tensor,
    bn: BatchNormNhwc,
    stride: usize,
    padding: usize,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        conv: VarBuilder,
        bn: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            weight: conv.get((c_out, c_in, k, k), "weight")?,
            bn: BatchNormNhwc::new(c_out, 1e-5, 0.1, bn)?,
            stride,
            padding: k / 2,
        })
    }

    /// `(b, h, w, c_in)` → `(b, h', w', c_out)`, normalised, then the ReLU if `relu`.
    fn forward(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let y = conv2d_nhwc(x, &self.weight, self.stride, self.padding)?;
        let activation = if relu {
            Activation::Relu
        } else {
            Activation::Identity
        };
        self.bn.forward(&y, train, activation)
    }
}

/// A residual block: BasicBlock (two 3×3) or Bottleneck (1×1, 3×3, 1×1).
#[derive(Debug, Clone)]
struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Block {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        let last = self.convs.len() - 1;
        for (i, c) in self.convs.iter().enumerate() {
            y = c.forward(&y, train, i < last)?;
        }
        let shortcut = match &self.downsample {
            Some(d) => d.forward(x, train, false)?,
            None => x.clone(),
        };
        Ok(add_relu(&y, &shortcut)?)
    }
}

/// Which residual block an architecture uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34), expansion 1.
    Basic,
    /// 1×1, 3×3, 1×1 convolutions (ResNet-50/101/152), expansion 4.
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// A torchvision-layout ResNet cut after `layer4`.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::{VarBuilder, VarMap};
/// use prototree_backbone::{Backbone, BackboneKind, ResNet};
///
/// let varmap = VarMap::new();
/// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let net = ResNet::new(BackboneKind::Resnet18, vb)?;
/// let x = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu)?;
/// assert_eq!(net.features(&x, false)?.dims(), &[1, 512, 2, 2]);
/// assert_eq!(net.last_block_prefixes(), vec!["layer4.1".to_string()]);
/// assert!(varmap.data().lock().unwrap().contains_key("layer2.0.downsample.1.running_var"));
/// # Ok::<(), prototree_backbone::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ResNet {
    kind: BackboneKind,
    stem: ConvBn,
    layers: Vec<Vec<Block>>,
    out_channels: usize,
}

impl ResNet {
    /// Smallest input side it accepts.
    pub const MIN_SIZE: usize = 32;

    /// The standard architecture for `kind` (one of the ResNet kinds).
    pub fn new(kind: BackboneKind, vb: VarBuilder) -> Result<Self> {
        let (block, counts) = match kind {
            BackboneKind::Resnet18 => (BlockKind::Basic, [2, 2, 2, 2]),
            BackboneKind::Resnet34 => (BlockKind::Basic, [3, 4, 6, 3]),
            BackboneKind::Resnet50 | BackboneKind::Resnet50Inat => {
                (BlockKind::Bottleneck, [3, 4, 6, 3])
            }
            BackboneKind::Resnet101 => (BlockKind::Bottleneck, [3, 4, 23, 3]),
            BackboneKind::Resnet152 => (BlockKind::Bottleneck, [3, 8, 36, 3]),
            other => return Err(Error::UnknownBackbone(format!("{other} is not a ResNet"))),
        };
        Self::with_blocks(kind, block, counts, 64, vb)
    }

    /// A ResNet with custom block counts per stage and stage widths `width`, `2·width`,
    /// `4·width`, `8·width` (torchvision: 64); small ones serve as test models. `kind` is
    /// what [`Backbone::kind`] reports.
    pub fn with_blocks(
        kind: BackboneKind,
        block: BlockKind,
        counts: [usize; 4],
        width: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let stem = ConvBn::new(3, width, 7, 2, vb.pp("conv1"), vb.pp("bn1"))?;
        let mut c_in = width;
        let mut layers = Vec::with_capacity(4);
        let widths = [width, 2 * width, 4 * width, 8 * width];
        for (li, (&n, planes)) in counts.iter().zip(widths).enumerate() {
            let lvb = vb.pp(format!("layer{}", li + 1));
            let mut blocks = Vec::with_capacity(n);
            for bi in 0..n {
                let stride = if bi == 0 && li > 0 { 2 } else { 1 };
                let bvb = lvb.pp(bi.to_string());
                let c_out = planes * block.expansion();
                let convs = match block {
                    BlockKind::Basic => vec![
                        ConvBn::new(c_in, planes, 3, stride, bvb.pp("conv1"), bvb.pp("bn1"))?,
                        ConvBn::new(planes, planes, 3, 1, bvb.pp("conv2"), bvb.pp("bn2"))?,
                    ],
                    BlockKind::Bottleneck => vec![
                        ConvBn::new(c_in, planes, 1, 1, bvb.pp("conv1"), bvb.pp("bn1"))?,
                        ConvBn::new(planes, planes, 3, stride, bvb.pp("conv2"), bvb.pp("bn2"))?,
                        ConvBn::new(planes, c_out, 1, 1, bvb.pp("conv3"), bvb.pp("bn3"))?,
                    ],
                };
                let downsample = if stride != 1 || c_in != c_out {
                    let d = bvb.pp("downsample");
                    Some(ConvBn::new(c_in, c_out, 1, stride, d.pp("0"), d.pp("1"))?)
                } else {
                    None
                };
                blocks.push(Block { convs, downsample });
                c_in = c_out;
            }
            layers.push(blocks);
        }
        Ok(Self {
            kind,
            stem,
            layers,
            out_channels: c_in,
        })
    }
}

impl Backbone for ResNet {
    fn kind(&self) -> BackboneKind {
        self.kind
    }

    fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        crate::backbone::check_input(x, Self::MIN_SIZE)?;
        let x = x.permute((0, 2, 3, 1))?.contiguous()?;
        let x = self.stem.forward(&x, train, true)?;
        let mut x = max_pool_nhwc(&x, 3, 2, 1)?;
        for layer in &self.layers {
            for block in layer {
                x = block.forward(&x, train)?;
            }
        }
        Ok(x.permute((0, 3, 1, 2))?.contiguous()?)
    }

    fn out_channels(&self) -> usize {
        self.out_channels
    }

    fn last_block_prefixes(&self) -> Vec<String> {
        let n = self.layers.last().map(Vec::len).unwrap_or(0);
        if n == 0 {
            return Vec::new();
        }
        vec![format!("layer4.{}", n - 1)]
    }
}
