//! BatchNorm (+ optional ReLU or ReLU6) of channels-last tensors, fused on the CPU.
//!
//! candle's `BatchNorm` runs a chain of broadcasting ops, each with its own full-size
//! temporary kept for the backward pass. Here, on the CPU in f32, one pass computes the
//! batch statistics, one applies the normalisation (and the ReLU), and the backward is a
//! single custom op of two passes that keeps nothing but the input and the output.
//! Elsewhere (GPU, other dtypes) the same formulas run as tensor ops. The running
//! statistics are the caller's (the backbone's `BatchNormNhwc` module).

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Shape, Tensor};
use rayon::prelude::*;

use crate::reduction::sum_in_order;

use crate::cpu::{assume_init, fused_cpu_fwd, uninit_vec};
use crate::dispatch::fused_cpu_f32;

/// Rows per parallel task of the statistics and normalisation passes.
const CHUNK_ROWS: usize = 512;

/// The activation applied right after a BatchNorm, inside the same fused pass.
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

/// Per-channel mean and biased variance of `x` over its rows: the batch statistics of a
/// channels-last BatchNorm. Fused on the CPU (two passes, no gradient: [`batch_norm_apply`]
/// differentiates through them itself); elsewhere tensor ops, differentiable.
///
/// # Shapes
/// - `x`: `(rows, c)` → two `(c,)` tensors
pub fn batch_norm_stats(x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    if fused_cpu_f32(&[x]) {
        let stats = x.contiguous()?.apply_op1_no_bwd(&BnStats)?;
        return Ok((stats.get(0)?, stats.get(1)?));
    }
    let mean = x.mean(0)?;
    let var = x.broadcast_sub(&mean)?.sqr()?.mean(0)?;
    Ok((mean, var))
}

/// `activation(gamma · (x − mean) · invstd + beta)` per channel, with `mean` and `invstd`
/// the batch's own (`batch_stats`: the backward differentiates through them) or running
/// statistics (constants). Fused on the CPU (one pass forward, one custom backward that
/// keeps only input and output); elsewhere tensor ops.
///
/// # Shapes
/// - `x`: `(rows, c)`; `gamma`, `beta`, `mean`, `invstd`: `(c,)` → `(rows, c)`
pub fn batch_norm_apply(
    x: &Tensor,
    (gamma, beta): (&Tensor, &Tensor),
    (mean, invstd): (&Tensor, &Tensor),
    activation: Activation,
    batch_stats: bool,
) -> candle_core::Result<Tensor> {
    if fused_cpu_f32(&[x, gamma, beta, mean, invstd]) {
        let op = BnApply {
            mean: mean.to_vec1::<f32>()?,
            invstd: invstd.to_vec1::<f32>()?,
            activation,
            batch_stats,
        };
        return x.contiguous()?.apply_op3(gamma, beta, op);
    }
    let y = x
        .broadcast_sub(mean)?
        .broadcast_mul(&(invstd * gamma)?)?
        .broadcast_add(beta)?;
    activation.apply_tensor(y)
}

/// Per-channel sums of `f(row)` over `x` (`rows × c`), f32 within a chunk, f64 across.
fn channel_sums<F>(x: &[f32], c: usize, f: F) -> Vec<f64>
where
    F: Fn(&[f32], &mut [f32]) + Sync,
{
    let parts = x
        .par_chunks((CHUNK_ROWS * c).max(1))
        .map(|chunk| {
            let mut acc = vec![0f32; c];
            for row in chunk.chunks_exact(c) {
                f(row, &mut acc);
            }
            acc.into_iter().map(f64::from).collect::<Vec<f64>>()
        })
        .collect::<Vec<_>>();
    // Chunks of fixed size summed in order: the same bits on any number of threads.
    sum_in_order(&parts, c)
}

/// `(rows, c)` → `(2, c)`: per-channel mean and biased variance (two passes).
struct BnStats;

impl CustomOp1 for BnStats {
    fn name(&self) -> &'static str {
        "prototree-batch-norm-stats"
    }

    fused_cpu_fwd!(self, "batch_norm_nhwc", |(x, l)| {
        let (rows, c) = l.shape().dims2()?;
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
    });
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

    fused_cpu_fwd!(
        self,
        "batch_norm_nhwc",
        |(x, l1), (gamma, _l2), (beta, _l3)| {
            let (rows, c) = l1.shape().dims2()?;
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
    );

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

    fused_cpu_fwd!(self, "batch_norm_nhwc", |(x, l1), (y, _l2), (dy, _l3)| {
        let (rows, c) = l1.shape().dims2()?;
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
            .collect::<Vec<_>>();
        // Chunks of fixed size summed in order: the same bits on any number of threads.
        let sums = sum_in_order(&sums, 2 * c);
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
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fused_vs_generic_diff;
    use candle_core::{DType, Device, Var};

    /// Statistics and normalisation (train mode: gradients through the batch statistics;
    /// eval mode: constants) on both paths: outputs and the gradients of input and affine
    /// parameters.
    #[test]
    fn fused_matches_generic() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (24, 5), &dev)? * 2.0)?)?;
        let gamma = Var::from_tensor(&Tensor::rand(2.5f32, 3.5, 5, &dev)?)?;
        let beta = Var::from_tensor(&Tensor::rand(1f32, 2.0, 5, &dev)?)?;
        let up = Tensor::randn(0f32, 1.0, (24, 5), &dev)?;
        for activation in [Activation::Identity, Activation::Relu, Activation::Relu6] {
            for train in [true, false] {
                let diff = fused_vs_generic_diff(|| {
                    let (mean, var) = if train {
                        batch_norm_stats(x.as_tensor())?
                    } else {
                        (
                            Tensor::zeros(5, DType::F32, &dev)?,
                            Tensor::ones(5, DType::F32, &dev)?,
                        )
                    };
                    let invstd = (var + 1e-5)?.sqrt()?.recip()?;
                    let y = batch_norm_apply(
                        x.as_tensor(),
                        (gamma.as_tensor(), beta.as_tensor()),
                        (&mean, &invstd),
                        activation,
                        train,
                    )?;
                    let grads = (&y * &up)?.sum_all()?.backward()?;
                    let mut out = vec![y];
                    for v in [&x, &gamma, &beta] {
                        match grads.get(v.as_tensor()) {
                            Some(g) => out.push(g.clone()),
                            None => candle_core::bail!("no gradient"),
                        }
                    }
                    Ok(out)
                })?;
                assert!(diff < 1e-4, "{activation:?} train {train}: {diff}");
            }
        }
        Ok(())
    }
}
