//! A small CNN for small images, trained from scratch: four 3×3 conv + BatchNorm + ReLU
//! stages, the first three followed by 2×2 max-pooling (stride 8 in all; receptive field
//! 38 px). The stride-4 variant pools after the first two stages only: four times the
//! latent patches, each seeing 26 px, for parts a few pixels wide. The local variant keeps
//! stride 8 but makes the last stage's convolution 1×1: each latent patch sees 22 px, so it
//! describes what lies under its own box rather than its neighbourhood.
//!
//! It runs channels-last with [`conv2d_nhwc`], the fused BatchNorm + ReLU of
//! [`BatchNormNhwc`] and [`max_pool_nhwc`], whose backward passes are as cheap as their
//! forward passes on the CPU; parameters keep PyTorch's layout and names.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::batch_norm::{Activation, BatchNormNhwc};
use crate::{Backbone, BackboneKind, Result};
use prototree_ops::{conv2d_nhwc, max_pool_nhwc};

/// Channel widths of the four stages.
pub const SMALL_CNN_CHANNELS: [usize; 4] = [16, 32, 64, 128];

/// One conv + BatchNorm + ReLU stage (`stages.{i}.conv`, `stages.{i}.bn`).
#[derive(Debug, Clone)]
struct Stage {
    conv: Tensor,
    /// Padding keeping the side (1 for 3×3, 0 for 1×1).
    padding: usize,
    bn: BatchNormNhwc,
    pool: bool,
}

impl Stage {
    fn new(c_in: usize, c_out: usize, kernel: usize, pool: bool, vb: VarBuilder) -> Result<Self> {
        let conv = vb.pp("conv").get((c_out, c_in, kernel, kernel), "weight")?;
        // PyTorch's defaults: eps 1e-5, momentum 0.1.
        let bn = BatchNormNhwc::new(c_out, 1e-5, 0.1, vb.pp("bn"))?;
        Ok(Self {
            conv,
            padding: kernel / 2,
            bn,
            pool,
        })
    }

    /// `x`: `(b, h, w, c_in)` → `(b, h', w', c_out)`.
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = conv2d_nhwc(x, &self.conv, 1, self.padding)?;
        // BatchNorm over the channel axis, fused with the ReLU.
        let y = self.bn.forward(&y, train, Activation::Relu)?;
        // 2×2, stride 2 (odd sizes floored).
        Ok(if self.pool {
            max_pool_nhwc(&y, 2, 2, 0)?
        } else {
            y
        })
    }
}

/// The small CNN backbone (see the module docs).
#[derive(Debug, Clone)]
pub struct SmallCnn {
    stages: Vec<Stage>,
    stride: usize,
    /// The last stage's convolution is 1×1 (`small-cnn-local`).
    local: bool,
}

impl SmallCnn {
    /// Smallest input side it accepts (three 2× poolings).
    pub const MIN_SIZE: usize = 8;

    /// Builds the stride-8 network with parameters under `vb` (`stages.{0..3}.{conv,bn}.*`).
    pub fn new(vb: VarBuilder) -> Result<Self> {
        Self::with_stride(8, vb)
    }

    /// Builds the network with stride 8 (three poolings) or 4 (two); both have the same
    /// parameters, so weights load into either.
    pub fn with_stride(stride: usize, vb: VarBuilder) -> Result<Self> {
        Self::build(stride, false, vb)
    }

    /// Builds the local variant: stride 8 with a 1×1 last convolution (receptive field
    /// 22 px; its last stage's weights are `(128, 64, 1, 1)`, so weights do not load
    /// across variants).
    pub fn local(vb: VarBuilder) -> Result<Self> {
        Self::build(8, true, vb)
    }

    fn build(stride: usize, local: bool, vb: VarBuilder) -> Result<Self> {
        let pools = match stride {
            4 => 2,
            8 => 3,
            other => return Err(crate::Error::UnsupportedStride(other)),
        };
        let last = SMALL_CNN_CHANNELS.len() - 1;
        let mut stages = Vec::with_capacity(SMALL_CNN_CHANNELS.len());
        let mut c_in = 3;
        for (i, &c_out) in SMALL_CNN_CHANNELS.iter().enumerate() {
            let kernel = if local && i == last { 1 } else { 3 };
            stages.push(Stage::new(
                c_in,
                c_out,
                kernel,
                i < pools,
                vb.pp(format!("stages.{i}")),
            )?);
            c_in = c_out;
        }
        Ok(Self {
            stages,
            stride,
            local,
        })
    }

    /// Downsampling from the input to the feature map (4 or 8).
    pub fn stride(&self) -> usize {
        self.stride
    }
}

impl Backbone for SmallCnn {
    fn kind(&self) -> BackboneKind {
        if self.local {
            BackboneKind::SmallCnnLocal
        } else if self.stride == 4 {
            BackboneKind::SmallCnnS4
        } else {
            BackboneKind::SmallCnn
        }
    }

    fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        crate::backbone::check_input(x, Self::MIN_SIZE)?;
        let mut x = x.permute((0, 2, 3, 1))?;
        for stage in &self.stages {
            x = stage.forward(&x, train)?;
        }
        Ok(x.permute((0, 3, 1, 2))?)
    }

    fn out_channels(&self) -> usize {
        SMALL_CNN_CHANNELS[SMALL_CNN_CHANNELS.len() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn shapes_and_stride() -> anyhow::Result<()> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let net = SmallCnn::new(vb)?;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu)?;
        let y = net.features(&x, true)?;
        assert_eq!(y.dims(), &[2, 128, 8, 8]);
        assert!(varmap
            .data()
            .lock()
            .unwrap()
            .contains_key("stages.3.bn.running_var"));
        let bad = Tensor::zeros((2, 1, 64, 64), DType::F32, &Device::Cpu)?;
        assert!(net.features(&bad, false).is_err());
        Ok(())
    }

    #[test]
    fn stride_four_keeps_the_parameters_and_doubles_the_map() -> anyhow::Result<()> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let fine = SmallCnn::with_stride(4, vb.clone())?;
        let created = varmap.all_vars().len();
        let coarse = SmallCnn::new(vb)?;
        // The stride-8 network found every parameter it needs already there.
        assert_eq!(varmap.all_vars().len(), created);
        assert_eq!(fine.kind(), BackboneKind::SmallCnnS4);
        assert_eq!(coarse.kind(), BackboneKind::SmallCnn);
        let x = Tensor::randn(0f32, 1.0, (1, 3, 64, 64), &Device::Cpu)?;
        assert_eq!(fine.features(&x, false)?.dims(), &[1, 128, 16, 16]);
        assert_eq!(coarse.features(&x, false)?.dims(), &[1, 128, 8, 8]);
        let e = SmallCnn::with_stride(2, VarBuilder::zeros(DType::F32, &Device::Cpu));
        assert!(e.is_err());
        Ok(())
    }

    #[test]
    fn the_local_variant_keeps_stride_eight_and_sees_twenty_two_pixels() -> anyhow::Result<()> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let net = SmallCnn::local(vb)?;
        assert_eq!(net.kind(), BackboneKind::SmallCnnLocal);
        let w = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .get("stages.3.conv.weight")
            .map(|v| v.as_tensor().dims().to_vec());
        assert_eq!(w, Some(vec![128, 64, 1, 1]));
        // A change at one pixel reaches only the cells whose 22-px field holds it: pixel
        // (30, 30) lies in the fields (8c − 7 ..= 8c + 14) of cells 2..=4 per axis; cells
        // 0, 6 and 7 must not see it (one cell of slack on either side).
        let x = Tensor::randn(0f32, 1.0, (1, 3, 64, 64), &Device::Cpu)?;
        let mut bumped = x.flatten_all()?.to_vec1::<f32>()?;
        for c in 0..3 {
            bumped[c * 64 * 64 + 30 * 64 + 30] += 50.0;
        }
        let y0 = net.features(&x, false)?;
        let y1 = net.features(
            &Tensor::from_vec(bumped, (1, 3, 64, 64), &Device::Cpu)?,
            false,
        )?;
        let diff = (y1 - &y0)?.abs()?.sum(1)?.squeeze(0)?.to_vec2::<f32>()?;
        assert_eq!(y0.dims(), &[1, 128, 8, 8]);
        for (r, row) in diff.iter().enumerate() {
            for (c, d) in row.iter().enumerate() {
                if !(1..=5).contains(&r) || !(1..=5).contains(&c) {
                    assert_eq!(*d, 0.0, "cell ({r}, {c}) saw the pixel");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync>() {}
        check::<SmallCnn>();
    }
}
