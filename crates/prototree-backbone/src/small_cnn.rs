//! A small CNN for small images, trained from scratch: four 3×3 conv + BatchNorm + ReLU
//! stages, the first three followed by 2×2 max-pooling (stride 8 in all).

use candle_core::{Module, ModuleT, Tensor};
use candle_nn::{batch_norm, conv2d_no_bias, BatchNorm, Conv2d, Conv2dConfig, VarBuilder};

use crate::{Backbone, BackboneKind, Error, Result};

/// Channel widths of the four stages.
pub const SMALL_CNN_CHANNELS: [usize; 4] = [32, 64, 128, 128];

/// One conv + BatchNorm + ReLU stage (`stages.{i}.conv`, `stages.{i}.bn`).
#[derive(Debug, Clone)]
struct Stage {
    conv: Conv2d,
    bn: BatchNorm,
    pool: bool,
}

impl Stage {
    fn new(c_in: usize, c_out: usize, pool: bool, vb: VarBuilder) -> Result<Self> {
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let conv = conv2d_no_bias(c_in, c_out, 3, cfg, vb.pp("conv"))?;
        let bn = batch_norm(c_out, 1e-5, vb.pp("bn"))?;
        Ok(Self { conv, bn, pool })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.conv.forward(x)?;
        let x = self.bn.forward_t(&x, train)?.relu()?;
        Ok(if self.pool { x.max_pool2d(2)? } else { x })
    }
}

/// The small CNN backbone (see the module docs).
#[derive(Debug, Clone)]
pub struct SmallCnn {
    stages: Vec<Stage>,
}

impl SmallCnn {
    /// Smallest input side it accepts (three 2× poolings).
    pub const MIN_SIZE: usize = 8;

    /// Builds the network with parameters under `vb` (`stages.{0..3}.{conv,bn}.*`).
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let mut stages = Vec::with_capacity(SMALL_CNN_CHANNELS.len());
        let mut c_in = 3;
        for (i, &c_out) in SMALL_CNN_CHANNELS.iter().enumerate() {
            let pool = i + 1 < SMALL_CNN_CHANNELS.len();
            stages.push(Stage::new(c_in, c_out, pool, vb.pp(format!("stages.{i}")))?);
            c_in = c_out;
        }
        Ok(Self { stages })
    }
}

impl Backbone for SmallCnn {
    fn kind(&self) -> BackboneKind {
        BackboneKind::SmallCnn
    }

    fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != 3 || dims[2] < Self::MIN_SIZE || dims[3] < Self::MIN_SIZE {
            return Err(Error::BadInput {
                min_size: Self::MIN_SIZE,
                got: dims.to_vec(),
            });
        }
        let mut x = x.clone();
        for stage in &self.stages {
            x = stage.forward(&x, train)?;
        }
        Ok(x)
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
    fn autotraits() {
        fn check<T: Send + Sync>() {}
        check::<SmallCnn>();
    }
}
