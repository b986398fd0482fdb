//! The leaves' two ops (spec §1.6, §2.5): the soft output `π · C` (constants `C`: leaves
//! learn without gradients) and the derivative-free update of the leaf parameters. Fused
//! on the CPU (one matrix product and one pass each, no temporaries); on a CUDA device the
//! update is one cuBLAS product and one fused kernel (`leaves_cuda`); elsewhere the same
//! formulas as tensor ops.

use candle_core::{CpuStorage, CustomOp1, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::{fused_cpu_fwd, with_cpu_slice};
use crate::dispatch::{cuda_f32, fused_cpu_f32};
use crate::gemm::{gemm_into, MatView};

/// The update's name in errors.
const OP: &str = "leaf update";

/// The soft output `ŷ = π · C`: the path-probability-weighted mixture of the leaf
/// distributions `C`, which are constants (the backward computes only `∂L/∂π = g · Cᵀ`).
///
/// # Shapes
/// - `path_probs`: `(b, num_leaves)`, `distributions`: `(num_leaves, num_classes)` → `(b, num_classes)`
pub fn leaf_mixture(path_probs: &Tensor, distributions: Tensor) -> candle_core::Result<Tensor> {
    let (_, l) = path_probs.dims2()?;
    let (l2, _) = distributions.dims2()?;
    if l != l2 {
        candle_core::bail!("leaf mixture: {l} path probabilities for {l2} leaves");
    }
    if fused_cpu_f32(&[path_probs, &distributions]) {
        return path_probs.contiguous()?.apply_op1(Mixture {
            dist: distributions.contiguous()?,
        });
    }
    path_probs.matmul(&distributions.detach())
}

/// One derivative-free step of the leaf parameters, for one batch (spec §2.5):
///
/// `update_l = Σ_b π_l(x_b) · c_l ⊙ onehot(y_b) / ŷ(x_b)`;
/// `params_l ← relu(params_l − epoch_start_l / num_batches) + update_l`,
///
/// with `c_l` the distributions before this step (`leaves = (params, distributions)`) and
/// `π`, `ŷ` from the batch's forward pass. Returns the new parameters (no gradient).
///
/// # Shapes
/// - `params`, `distributions`, `epoch_start`: `(num_leaves, num_classes)`
/// - `path_probs`: `(b, num_leaves)`, `outputs`, `targets_one_hot`: `(b, num_classes)`
pub fn leaf_update(
    (params, distributions): (&Tensor, Tensor),
    path_probs: &Tensor,
    outputs: &Tensor,
    targets_one_hot: &Tensor,
    epoch_start: &Tensor,
    num_batches: usize,
) -> candle_core::Result<Tensor> {
    let ratio = (targets_one_hot.detach() / outputs.detach())?; // (b, k)
    if fused_cpu_f32(&[params, path_probs, &ratio, epoch_start, &distributions])
        && epoch_start.dims() == params.dims()
    {
        return fused_update(
            params,
            &distributions.contiguous()?,
            &path_probs.detach().contiguous()?,
            &ratio.contiguous()?,
            &epoch_start.contiguous()?,
            num_batches,
        );
    }
    let evidence = path_probs.detach().t()?.matmul(&ratio)?; // (L, k)
    if cuda_f32(&[params, &evidence, epoch_start, &distributions])
        && epoch_start.dims() == params.dims()
    {
        #[cfg(feature = "cuda")]
        return crate::leaves_cuda::leaf_step(
            params,
            epoch_start,
            &distributions,
            &evidence,
            (1.0 / num_batches.max(1) as f64) as f32,
        );
    }
    let update = (distributions * evidence)?;
    let decayed = (params - (epoch_start / num_batches.max(1) as f64)?)?.relu()?;
    Ok((decayed + update)?.detach())
}

/// The derivative-free step on slices: `evidence = πᵀ · ratio` as one matrix product, then
/// one pass `relu(params − start / n) + c ⊙ evidence` (the same arithmetic as the tensor
/// version, without its four `(L, k)` temporaries).
fn fused_update(
    params: &Tensor,
    dist: &Tensor,
    path_probs: &Tensor,
    ratio: &Tensor,
    epoch_start: &Tensor,
    num_batches: usize,
) -> candle_core::Result<Tensor> {
    let (l, k) = params.dims2()?;
    let (b, l2) = path_probs.dims2()?;
    let (b2, k2) = ratio.dims2()?;
    if l2 != l || b2 != b || k2 != k {
        candle_core::bail!(
            "leaf update: path probabilities ({b}, {l2}) and class ratios ({b2}, {k2}) do not fit ({l}, {k}) leaves"
        );
    }
    let params = params.contiguous()?;
    let mut evidence = vec![0f32; l * k];
    with_cpu_slice(path_probs, OP, |pi| {
        with_cpu_slice(ratio, OP, |r| {
            // πᵀ (L, b): element (leaf, image) at image·L + leaf.
            let pi_t = MatView {
                data: pi,
                rs: 1,
                cs: l,
            };
            let r = MatView {
                data: r,
                rs: k,
                cs: 1,
            };
            gemm_into(&mut evidence, (l, k, b), pi_t, r, false, true)
        })
    })???;
    // `epoch_start / n` as candle computes it: an affine map by the f32 of 1/n.
    let inv = (1.0 / num_batches.max(1) as f64) as f32;
    let mut next = vec![0f32; l * k];
    with_cpu_slice(&params, OP, |p| {
        with_cpu_slice(dist, OP, |c| {
            with_cpu_slice(epoch_start, OP, |s0| {
                next.par_chunks_mut(k.max(1))
                    .zip(evidence.par_chunks(k.max(1)))
                    .enumerate()
                    .for_each(|(leaf, (out, ev))| {
                        let row = leaf * k..(leaf + 1) * k;
                        for ((((o, &e), &pv), &cv), &sv) in out
                            .iter_mut()
                            .zip(ev)
                            .zip(&p[row.clone()])
                            .zip(&c[row.clone()])
                            .zip(&s0[row])
                        {
                            let decayed = (pv - (sv * inv + 0.0)).max(0.0);
                            *o = decayed + cv * e;
                        }
                    });
            })
        })
    })???;
    Tensor::from_vec(next, (l, k), params.device())
}

/// The CPU op behind [`leaf_mixture`]: `π (b, L)` → `π · C (b, k)`, `C` held by the op.
struct Mixture {
    dist: Tensor,
}

impl CustomOp1 for Mixture {
    fn name(&self) -> &'static str {
        "prototree-leaf-mixture"
    }

    fused_cpu_fwd!(self, "leaf mixture", |(pi, l)| {
        let (b, leaves) = l.shape().dims2()?;
        let (leaves2, k) = self.dist.dims2()?;
        if leaves != leaves2 {
            candle_core::bail!("mixture: {leaves} path probabilities for {leaves2} leaves");
        }
        let mut out = vec![0f32; b * k];
        with_cpu_slice(&self.dist, "leaf mixture", |c| {
            let (pi, c) = (MatView::rows(pi, leaves), MatView::rows(c, k));
            gemm_into(&mut out, (b, k, leaves), pi, c, false, true)
        })??;
        Ok((CpuStorage::F32(out), Shape::from((b, k))))
    });

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (b, leaves) = arg.dims2()?;
        let (_, k) = self.dist.dims2()?;
        let grad = grad_res.contiguous()?;
        let mut out = vec![0f32; b * leaves];
        with_cpu_slice(&grad, "leaf mixture", |g| {
            with_cpu_slice(&self.dist, "leaf mixture", |c| {
                let g = MatView::rows(g, k);
                // Cᵀ (k, L): element (class, leaf) at leaf·k + class.
                let c_t = MatView::transposed(c, k);
                gemm_into(&mut out, (b, leaves, k), g, c_t, false, true)
            })
        })???;
        Ok(Some(Tensor::from_vec(out, (b, leaves), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fused_vs_generic_diff, weighted_sum_grad};
    use candle_core::{Device, Var};

    #[test]
    fn fused_mixture_and_update_match_generic() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let params = Tensor::randn(0f32, 2.0, (16, 7), &dev)?.relu()?;
        let dist = candle_core::Tensor::rand(0.01f32, 1.0, (16, 7), &dev)?;
        let pi = Var::from_tensor(&Tensor::rand(0f32, 1.0, (5, 16), &dev)?)?;
        let up = Tensor::rand(0f32, 1.0, (5, 7), &dev)?;
        let y = (Tensor::rand(0f32, 1.0, (5, 7), &dev)? + 0.1)?;
        let t = Tensor::new(&[[0f32, 1., 0., 0., 0., 0., 0.]; 5], &dev)?;
        let start = Tensor::randn(0f32, 1.0, (16, 7), &dev)?.relu()?;
        let diff = fused_vs_generic_diff(|| {
            let mix = leaf_mixture(pi.as_tensor(), dist.clone())?;
            let g = weighted_sum_grad(&mix, &up, &pi)?;
            let next = leaf_update((&params, dist.clone()), pi.as_tensor(), &y, &t, &start, 3)?;
            Ok(vec![mix, g, next])
        })?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }
}
