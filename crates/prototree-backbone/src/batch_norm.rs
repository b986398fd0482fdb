//! BatchNorm (+ optional ReLU or ReLU6) of channels-last tensors, fused on the CPU.
//!
//! candle's `BatchNorm` runs a chain of broadcasting ops, each with its own full-size
//! temporary kept for the backward pass. Here, on the CPU in f32, one pass computes the
//! batch statistics, one applies the normalisation (and the ReLU), and the backward is a
//! single custom op of two passes that keeps nothing but the input and the output.
//! The running statistics update exactly as candle's and PyTorch's: momentum-weighted,
//! the variance unbiased (`n / (n − 1)`). Elsewhere (GPU, other dtypes) it falls back to
//! candle's `BatchNorm` on the same variables.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Shape, Tensor, Var};
use candle_nn::{BatchNorm, BatchNormConfig, Init, ModuleT, VarBuilder};
use rayon::prelude::*;

use crate::conv_op::{assume_init, uninit_vec};
use crate::Result;

/// Rows per parallel task of the statistics and normalisation passes.
const CHUNK_ROWS: usize = 512;

/// The activation applied right after a [`BatchNormNhwc`], inside the same fused pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// None: the normalised values as they are.
    Identity,
    /// `max(x, 0)` (ResNet, the small CNN).
    Relu,
    /// `min(max(x, 0), 6)` (EfficientNet-Lite).
    Relu6,
}

impl Activation {
    /// The activation of `v`.
    #[inline]
    fn apply(self, v: f32) -> f32 {
        match self {
            Activation::Identity => v,
            Activation::Relu => v.max(0.0),
            Activation::Relu6 => v.clamp(0.0, 6.0),
        }
    }

    /// The same activation as candle tensor ops (the non-fused path).
    fn apply_tensor(self, y: Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Identity => Ok(y),
            Activation::Relu => y.relu(),
            Activation::Relu6 => y.clamp(0f32, 6f32),
        }
    }
}

/// A BatchNorm over the last (channel) dimension, with an optional fused activation.
///
/// Parameters and running statistics are created through the `VarBuilder` under
/// PyTorch's names (`weight`, `bias`, `running_mean`, `running_var`).
#[derive(Debug, Clone)]
pub struct BatchNormNhwc {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
    generic: BatchNorm,
}

impl BatchNormNhwc {
    /// A BatchNorm of `c` channels with `eps` and `momentum` (PyTorch's meaning).
    pub fn new(c: usize, eps: f64, momentum: f64, vb: VarBuilder) -> Result<Self> {
        let running_mean = vb.get_with_hints(c, "running_mean", Init::Const(0.))?;
        let running_var = vb.get_with_hints(c, "running_var", Init::Const(1.))?;
        let weight = vb.get_with_hints(c, "weight", Init::Const(1.))?;
        let bias = vb.get_with_hints(c, "bias", Init::Const(0.))?;
        let generic = candle_nn::batch_norm(
            c,
            BatchNormConfig {
                eps,
                remove_mean: true,
                affine: true,
                momentum,
            },
            vb,
        )?;
        Ok(Self {
            weight,
            bias,
            // A variable's tensor gives a Var sharing its storage: updates reach the VarMap.
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            eps,
            momentum,
            generic,
        })
    }

    /// Normalises `x` over all but its last dimension, then applies `activation`.
    ///
    /// `train`: batch statistics, and the running statistics updated; otherwise the
    /// running statistics.
    ///
    /// # Shapes
    /// - `x`: `(…, c)` → same shape
    pub fn forward(&self, x: &Tensor, train: bool, activation: Activation) -> Result<Tensor> {
        let c = self.weight.dim(0)?;
        let shape = x.shape().clone();
        if x.dims().last() != Some(&c) {
            return Err(candle_core::Error::ShapeMismatchBinaryOp {
                lhs: shape,
                rhs: self.weight.shape().clone(),
                op: "batch_norm_nhwc",
            }
            .into());
        }
        if !x.device().is_cpu() || x.dtype() != DType::F32 {
            let y = self
                .generic
                .forward_t(&x.reshape(((), c))?, train)?
                .reshape(&shape)?;
            return Ok(activation.apply_tensor(y)?);
        }
        let x = x.reshape(((), c))?.contiguous()?;
        let rows = x.dim(0)?;
        let (mean, invstd) = if train {
            let stats = x.apply_op1_no_bwd(&BnStats)?;
            let (mean, var) = (stats.get(0)?, stats.get(1)?);
            let m = self.momentum;
            let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (&mean * m)?)?;
            self.running_mean.set(&rm)?;
            let unbias = if rows > 1 {
                rows as f64 / (rows as f64 - 1.0)
            } else {
                1.0
            };
            let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (&var * (m * unbias))?)?;
            self.running_var.set(&rv)?;
            (mean, var)
        } else {
            (
                self.running_mean.as_detached_tensor(),
                self.running_var.as_detached_tensor(),
            )
        };
        let invstd = (invstd + self.eps)?.sqrt()?.recip()?;
        let op = BnApply {
            mean: mean.to_vec1::<f32>()?,
            invstd: invstd.to_vec1::<f32>()?,
            activation,
            batch_stats: train,
        };
        Ok(x.apply_op3(&self.weight, &self.bias, op)?.reshape(shape)?)
    }
}

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    crate::cpu_slice::contiguous_f32(s, l, "batch_norm_nhwc")
}

/// Per-channel sums of `f(row)` over `x` (`rows × c`), f32 within a chunk, f64 across.
fn channel_sums<F>(x: &[f32], c: usize, f: F) -> Vec<f64>
where
    F: Fn(&[f32], &mut [f32]) + Sync,
{
    x.par_chunks((CHUNK_ROWS * c).max(1))
        .map(|chunk| {
            let mut acc = vec![0f32; c];
            for row in chunk.chunks_exact(c) {
                f(row, &mut acc);
            }
            acc.into_iter().map(f64::from).collect::<Vec<f64>>()
        })
        .reduce(
            || vec![0f64; c],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        )
}

/// `(rows, c)` → `(2, c)`: per-channel mean and biased variance (two passes).
struct BnStats;

impl CustomOp1 for BnStats {
    fn name(&self) -> &'static str {
        "prototree-batch-norm-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, c) = l.shape().dims2()?;
        let x = contiguous(s, l)?;
        let n = rows.max(1) as f64;
        let mean: Vec<f32> = channel_sums(x, c, |row, acc| {
            for (a, v) in acc.iter_mut().zip(row) {
                *a += *v;
            }
        })
        .into_iter()
        .map(|s| (s / n) as f32)
        .collect();
        let var: Vec<f32> = channel_sums(x, c, |row, acc| {
            for ((a, v), m) in acc.iter_mut().zip(row).zip(&mean) {
                let d = *v - *m;
                *a += d * d;
            }
        })
        .into_iter()
        .map(|s| (s / n) as f32)
        .collect();
        let mut out = mean;
        out.extend(var);
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }
}

/// `(x (rows, c), gamma (c), beta (c))` → `gamma·(x − mean)·invstd + beta`, activated.
struct BnApply {
    mean: Vec<f32>,
    invstd: Vec<f32>,
    activation: Activation,
    /// Whether `mean`/`invstd` are the batch's own (train mode), which the backward
    /// differentiates through.
    batch_stats: bool,
}

impl CustomOp3 for BnApply {
    fn name(&self) -> &'static str {
        "prototree-batch-norm-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, c) = l1.shape().dims2()?;
        let x = contiguous(s1, l1)?;
        let (gamma, beta) = (contiguous(s2, l2)?, contiguous(s3, l3)?);
        let scale: Vec<f32> = gamma.iter().zip(&self.invstd).map(|(g, i)| g * i).collect();
        let shift: Vec<f32> = beta
            .iter()
            .zip(&scale)
            .zip(&self.mean)
            .map(|((b, s), m)| b - m * s)
            .collect();
        let mut y = uninit_vec(rows * c);
        let activation = self.activation;
        y.par_chunks_mut((CHUNK_ROWS * c).max(1))
            .zip(x.par_chunks((CHUNK_ROWS * c).max(1)))
            .for_each(|(yc, xc)| {
                for (yr, xr) in yc.chunks_exact_mut(c).zip(xc.chunks_exact(c)) {
                    for (((o, v), s), t) in yr.iter_mut().zip(xr).zip(&scale).zip(&shift) {
                        let r = v * s + t;
                        o.write(activation.apply(r));
                    }
                }
            });
        // SAFETY: the chunks cover y and every element was written.
        let y = unsafe { assume_init(y) };
        Ok((CpuStorage::F32(y), Shape::from((rows, c))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, c) = x.dims2()?;
        let packed = x.apply_op3_no_bwd(
            res,
            &dy.contiguous()?,
            &BnBackward {
                mean: self.mean.clone(),
                invstd: self.invstd.clone(),
                gamma: gamma.to_vec1::<f32>()?,
                activation: self.activation,
                batch_stats: self.batch_stats,
            },
        )?;
        let n = rows * c;
        let dx = packed.narrow(0, 0, n)?.reshape((rows, c))?;
        let dgamma = packed.narrow(0, n, c)?;
        let dbeta = packed.narrow(0, n + c, c)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// Runs `$body` with `$pass` bound to the activation's gradient mask (`y ↦ passes`), a
/// distinct closure type per activation, so that the row kernels are compiled, and
/// vectorised, once per activation rather than testing the activation per element.
macro_rules! with_mask {
    ($activation:expr, |$pass:ident| $body:expr) => {
        match $activation {
            Activation::Identity => {
                let $pass = |_: f32| true;
                $body
            }
            Activation::Relu => {
                let $pass = |y: f32| y > 0.0;
                $body
            }
            Activation::Relu6 => {
                let $pass = |y: f32| y > 0.0 && y < 6.0;
                $body
            }
        }
    };
}

/// Adds one row's `g` and `g·x̂` into the per-channel sums (`g` masked by `pass(y)`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn sum_row(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    mean: &[f32],
    invstd: &[f32],
    sg: &mut [f32],
    sgx: &mut [f32],
    pass: impl Fn(f32) -> bool,
) {
    let it = x.iter().zip(y).zip(dy).zip(mean).zip(invstd);
    for ((((((&x, &y), &d), &m), &is), a), b) in it.zip(sg.iter_mut()).zip(sgx.iter_mut()) {
        let g = if pass(y) { d } else { 0.0 };
        *a += g;
        *b += g * (x - m) * is;
    }
}

/// Per-channel factors of the BatchNorm input gradient.
struct RowStats<'a> {
    mean: &'a [f32],
    invstd: &'a [f32],
    /// `γ·invstd`.
    scale: &'a [f32],
    /// Mean of the masked gradient.
    mean_g: &'a [f32],
    /// Mean of the masked gradient times `x̂`.
    mean_gx: &'a [f32],
}

/// One row of the input gradient (`g` masked by `pass(y)`).
#[inline(always)]
fn grad_row(
    dx: &mut [std::mem::MaybeUninit<f32>],
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    s: &RowStats,
    batch_stats: bool,
    pass: impl Fn(f32) -> bool,
) {
    let it = dx.iter_mut().zip(x).zip(y).zip(dy).zip(s.scale);
    if batch_stats {
        let stats = s.mean.iter().zip(s.invstd).zip(s.mean_g).zip(s.mean_gx);
        for (((((o, &x), &y), &d), &sc), (((&m, &is), &mg), &mgx)) in it.zip(stats) {
            let g = if pass(y) { d } else { 0.0 };
            o.write(sc * (g - mg - (x - m) * is * mgx));
        }
    } else {
        for ((((o, _), &y), &d), &sc) in it {
            o.write(if pass(y) { sc * d } else { 0.0 });
        }
    }
}

/// `(x, y, dy)` → `[dx (rows·c) | dgamma (c) | dbeta (c)]`.
struct BnBackward {
    mean: Vec<f32>,
    invstd: Vec<f32>,
    gamma: Vec<f32>,
    activation: Activation,
    batch_stats: bool,
}

impl CustomOp3 for BnBackward {
    fn name(&self) -> &'static str {
        "prototree-batch-norm-nhwc-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, c) = l1.shape().dims2()?;
        let x = contiguous(s1, l1)?;
        let y = contiguous(s2, l2)?;
        let dy = contiguous(s3, l3)?;
        let activation = self.activation;
        let (mean, invstd) = (&self.mean, &self.invstd);
        let chunk = (CHUNK_ROWS * c).max(1);
        // Pass 1: Σ g and Σ g·x̂ per channel, g the gradient after the activation's mask.
        let sums = x
            .par_chunks(chunk)
            .zip(y.par_chunks(chunk))
            .zip(dy.par_chunks(chunk))
            .map(|((xc, yc), gc)| {
                let mut sg = vec![0f32; c];
                let mut sgx = vec![0f32; c];
                for ((xr, yr), gr) in xc
                    .chunks_exact(c)
                    .zip(yc.chunks_exact(c))
                    .zip(gc.chunks_exact(c))
                {
                    with_mask!(activation, |pass| sum_row(
                        xr, yr, gr, mean, invstd, &mut sg, &mut sgx, pass
                    ));
                }
                sg.into_iter()
                    .chain(sgx)
                    .map(f64::from)
                    .collect::<Vec<f64>>()
            })
            .reduce(
                || vec![0f64; 2 * c],
                |mut a, b| {
                    for (p, q) in a.iter_mut().zip(b) {
                        *p += q;
                    }
                    a
                },
            );
        let n = rows.max(1) as f64;
        let (sum_g, sum_gx) = sums.split_at(c);
        let scale: Vec<f32> = self.gamma.iter().zip(invstd).map(|(g, i)| g * i).collect();
        let mean_g: Vec<f32> = sum_g.iter().map(|s| (s / n) as f32).collect();
        let mean_gx: Vec<f32> = sum_gx.iter().map(|s| (s / n) as f32).collect();
        let mut out = uninit_vec(rows * c + 2 * c);
        let (dx, tail) = out.split_at_mut(rows * c);
        let batch_stats = self.batch_stats;
        let stats = RowStats {
            mean,
            invstd,
            scale: &scale,
            mean_g: &mean_g,
            mean_gx: &mean_gx,
        };
        // Pass 2: dx = γ·invstd·(g − mean(g) − x̂·mean(g·x̂)) (train), γ·invstd·g (eval).
        dx.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .zip(y.par_chunks(chunk))
            .zip(dy.par_chunks(chunk))
            .for_each(|(((dc, xc), yc), gc)| {
                for (((dr, xr), yr), gr) in dc
                    .chunks_exact_mut(c)
                    .zip(xc.chunks_exact(c))
                    .zip(yc.chunks_exact(c))
                    .zip(gc.chunks_exact(c))
                {
                    with_mask!(activation, |pass| grad_row(
                        dr,
                        xr,
                        yr,
                        gr,
                        &stats,
                        batch_stats,
                        pass
                    ));
                }
            });
        for i in 0..c {
            tail[i].write(sum_gx[i] as f32);
            tail[c + i].write(sum_g[i] as f32);
        }
        // SAFETY: dx was written chunk by chunk in full, the tail element by element.
        let out = unsafe { assume_init(out) };
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use candle_nn::VarMap;

    fn max_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
        Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
    }

    /// The fused op against candle's `BatchNorm` (+ `relu` / `clamp(0, 6)`) on the same
    /// variables: output,
    /// running statistics and the gradients of input, weight and bias.
    #[test]
    fn fused_matches_candle_batch_norm() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let activations = [Activation::Identity, Activation::Relu, Activation::Relu6];
        for (train, act) in [true, false]
            .into_iter()
            .flat_map(|t| activations.map(|a| (t, a)))
        {
            let (mut fused_map, mut plain_map) = (VarMap::new(), VarMap::new());
            let vb_f = VarBuilder::from_varmap(&fused_map, DType::F32, &dev);
            let vb_p = VarBuilder::from_varmap(&plain_map, DType::F32, &dev);
            let ours = BatchNormNhwc::new(5, 1e-5, 0.1, vb_f)?;
            let cfg = BatchNormConfig {
                eps: 1e-5,
                remove_mean: true,
                affine: true,
                momentum: 0.1,
            };
            let theirs = candle_nn::batch_norm(5, cfg, vb_p)?;
            // Same non-trivial parameters and running statistics in both maps; a scale of
            // 2.5–3.5 sends a good share of the outputs past both ends of ReLU6.
            for (name, lo) in [
                ("weight", 2.5f32),
                ("bias", 1.0),
                ("running_mean", -1.0),
                ("running_var", 0.5),
            ] {
                let v = Tensor::rand(lo, lo + 1.0, 5, &dev)?;
                fused_map.set_one(name, &v)?;
                plain_map.set_one(name, &v)?;
            }
            let x = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &dev)? * 2.0)?)?;
            let up = Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &dev)?;
            let y1 = ours.forward(x.as_tensor(), train, act)?;
            let mut y2 = theirs
                .forward_t(&x.as_tensor().reshape((24, 5))?, train)?
                .reshape((2, 3, 4, 5))?;
            y2 = match act {
                Activation::Identity => y2,
                Activation::Relu => y2.relu()?,
                Activation::Relu6 => y2.clamp(0f32, 6f32)?,
            };
            assert!(max_diff(&y1, &y2)? < 1e-5, "train {train} {act:?}");
            let (g1, g2) = (
                (&y1 * &up)?.sum_all()?.backward()?,
                (&y2 * &up)?.sum_all()?.backward()?,
            );
            let (d1, d2) = (
                fused_map.data().lock().unwrap(),
                plain_map.data().lock().unwrap(),
            );
            for name in ["running_mean", "running_var"] {
                let d = max_diff(d1[name].as_tensor(), d2[name].as_tensor())?;
                assert!(d < 1e-6, "{name}: {d}");
            }
            let pairs = [
                (x.as_tensor(), x.as_tensor(), "x"),
                (d1["weight"].as_tensor(), d2["weight"].as_tensor(), "weight"),
                (d1["bias"].as_tensor(), d2["bias"].as_tensor(), "bias"),
            ];
            for (a, b, name) in pairs {
                let (ga, gb) = (g1.get(a).unwrap(), g2.get(b).unwrap());
                let d = max_diff(ga, gb)?;
                assert!(d < 1e-4, "train {train} {act:?}: grad {name} diff {d}");
            }
        }
        Ok(())
    }
}
