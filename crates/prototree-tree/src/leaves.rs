//! Leaf class distributions and their derivative-free update (spec §1.6, §2.5).

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::min_distance_op::{gemm_into, with_cpu_slice, MatView};
use crate::Result;

/// The leaves' distribution parameters, one row per leaf of the complete tree.
///
/// Distributions are `softmax(params)` per row. The parameters are not trained by the
/// optimiser: [`Leaves::derivative_free_update`] accumulates class evidence instead.
///
/// The distributions are computed once per change of the parameters and kept, so a forward
/// pass costs no softmax.
#[derive(Debug, Clone)]
pub struct Leaves {
    params: Tensor,
    dist: Tensor,
}

impl Leaves {
    /// Leaves initialised to zeros (uniform distributions), as the reference does.
    ///
    /// # Shapes
    /// returns leaves with parameters `(num_leaves, num_classes)`
    pub fn zeros(
        num_leaves: usize,
        num_classes: usize,
        device: &candle_core::Device,
    ) -> Result<Self> {
        Self::with_params(Tensor::zeros(
            (num_leaves, num_classes),
            DType::F32,
            device,
        )?)
    }

    fn with_params(params: Tensor) -> Result<Self> {
        let dist = candle_nn::ops::softmax_last_dim(&params)?;
        Ok(Self { params, dist })
    }

    /// Leaves from explicit parameters `(num_leaves, num_classes)`.
    pub fn from_params(params: Tensor) -> Result<Self> {
        params.dims2()?;
        Self::with_params(params.detach())
    }

    /// The raw parameters `(num_leaves, num_classes)`.
    pub fn params(&self) -> &Tensor {
        &self.params
    }

    /// Class distributions `softmax(params − max)` per leaf, `(num_leaves, num_classes)`.
    pub fn distributions(&self) -> Result<Tensor> {
        Ok(self.dist.clone())
    }

    /// The distributions of the listed leaves only, one row per entry of `leaves`
    /// (`(leaves.len(), num_classes)`); the same values as the rows of
    /// [`Leaves::distributions`].
    pub fn distributions_of(&self, leaves: &[usize]) -> Result<Tensor> {
        let num_leaves = self.params.dim(0)?;
        let mut index = Vec::with_capacity(leaves.len());
        for &leaf in leaves {
            match u32::try_from(leaf) {
                Ok(i) if leaf < num_leaves => index.push(i),
                _ => {
                    return Err(crate::Error::Data(format!(
                        "leaf {leaf} out of range (the tree has {num_leaves} leaves)"
                    )))
                }
            }
        }
        let index = Tensor::from_vec(index, leaves.len(), self.params.device())?;
        Ok(self.dist.index_select(&index, 0)?)
    }

    /// The soft output `ŷ = π · C`: the path-probability-weighted mixture of the leaf
    /// distributions `C` (constants: leaves learn without gradients, so the backward pass
    /// computes only `∂L/∂π = g · Cᵀ`).
    ///
    /// # Shapes
    /// - `path_probs`: `(b, num_leaves)` → `(b, num_classes)`
    pub fn mixture(&self, path_probs: &Tensor) -> Result<Tensor> {
        let dist = self.distributions()?;
        if path_probs.device().is_cpu()
            && path_probs.dtype() == DType::F32
            && dist.dtype() == DType::F32
        {
            let (_, l) = path_probs.dims2()?;
            let (l2, _) = dist.dims2()?;
            if l != l2 {
                return Err(crate::Error::ShapeMismatch {
                    tensor: "leaf path probabilities".into(),
                    expected: vec![l2],
                    got: vec![l],
                });
            }
            return Ok(path_probs.contiguous()?.apply_op1(Mixture {
                dist: dist.contiguous()?,
            })?);
        }
        Ok(path_probs.matmul(&dist)?)
    }

    /// One derivative-free step (spec §2.5), for one batch:
    ///
    /// `update_l = Σ_b π_l(x_b) · c_l ⊙ onehot(y_b) / ŷ(x_b)`;
    /// `params_l ← relu(params_l − epoch_start_l / num_batches) + update_l`.
    ///
    /// `c_l` are the distributions before this update; `π` and `ŷ` come from the batch's
    /// forward pass.
    ///
    /// # Shapes
    /// - `path_probs`: `(b, num_leaves)`, `outputs`: `(b, num_classes)`, `targets_one_hot`: `(b, num_classes)`
    /// - `epoch_start`: the parameters at the start of the epoch, `(num_leaves, num_classes)`
    pub fn derivative_free_update(
        &mut self,
        path_probs: &Tensor,
        outputs: &Tensor,
        targets_one_hot: &Tensor,
        epoch_start: &Tensor,
        num_batches: usize,
    ) -> Result<()> {
        let dist = self.distributions()?;
        let ratio = (targets_one_hot.detach() / outputs.detach())?; // (b, k)
        let all_cpu_f32 = [&self.params, path_probs, &ratio, epoch_start]
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32);
        if all_cpu_f32 && epoch_start.dims() == self.params.dims() {
            let params = fused_update(
                &self.params,
                &dist,
                &path_probs.detach().contiguous()?,
                &ratio.contiguous()?,
                &epoch_start.contiguous()?,
                num_batches,
            )?;
            *self = Self::with_params(params)?;
            return Ok(());
        }
        let evidence = path_probs.detach().t()?.matmul(&ratio)?; // (L, k)
        let update = (dist * evidence)?;
        let decayed = (&self.params - (epoch_start / num_batches.max(1) as f64)?)?.relu()?;
        *self = Self::with_params((decayed + update)?.detach())?;
        Ok(())
    }
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
) -> Result<Tensor> {
    let (l, k) = params.dims2()?;
    let (b, l2) = path_probs.dims2()?;
    let (b2, k2) = ratio.dims2()?;
    if l2 != l || b2 != b || k2 != k {
        return Err(crate::Error::ShapeMismatch {
            tensor: "leaf update inputs".into(),
            expected: vec![b, l, k],
            got: vec![b2, l2, k2],
        });
    }
    let params = params.contiguous()?;
    let mut evidence = vec![0f32; l * k];
    with_cpu_slice(path_probs, |pi| {
        with_cpu_slice(ratio, |r| {
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
            gemm_into(&mut evidence, l, k, b, pi_t, r, true)
        })
    })???;
    // `epoch_start / n` as candle computes it: an affine map by the f32 of 1/n.
    let inv = (1.0 / num_batches.max(1) as f64) as f32;
    let mut next = vec![0f32; l * k];
    with_cpu_slice(&params, |p| {
        with_cpu_slice(dist, |c| {
            with_cpu_slice(epoch_start, |s0| {
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
    Ok(Tensor::from_vec(next, (l, k), params.device())?)
}

/// The CPU op behind [`Leaves::mixture`]: `π (b, L)` → `π · C (b, k)`, `C` held by the op.
struct Mixture {
    dist: Tensor,
}

impl CustomOp1 for Mixture {
    fn name(&self) -> &'static str {
        "prototree-leaf-mixture"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, leaves) = l.shape().dims2()?;
        let (leaves2, k) = self.dist.dims2()?;
        if leaves != leaves2 {
            candle_core::bail!("mixture: {leaves} path probabilities for {leaves2} leaves");
        }
        let pi = match l.contiguous_offsets() {
            Some((a, e)) => &s.as_slice::<f32>()?[a..e],
            None => candle_core::bail!("mixture op needs a contiguous input"),
        };
        let mut out = vec![0f32; b * k];
        with_cpu_slice(&self.dist, |c| {
            let pi = MatView {
                data: pi,
                rs: leaves,
                cs: 1,
            };
            let c = MatView {
                data: c,
                rs: k,
                cs: 1,
            };
            gemm_into(&mut out, b, k, leaves, pi, c, true)
        })??;
        Ok((CpuStorage::F32(out), Shape::from((b, k))))
    }

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
        with_cpu_slice(&grad, |g| {
            with_cpu_slice(&self.dist, |c| {
                let g = MatView {
                    data: g,
                    rs: k,
                    cs: 1,
                };
                // Cᵀ (k, L): element (class, leaf) at leaf·k + class.
                let c_t = MatView {
                    data: c,
                    rs: 1,
                    cs: k,
                };
                gemm_into(&mut out, b, leaves, k, g, c_t, true)
            })
        })???;
        Ok(Some(Tensor::from_vec(out, (b, leaves), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn depth_one_update_by_hand() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        // Two leaves, two classes, params zero -> c = [0.5, 0.5] for both.
        let mut leaves = Leaves::zeros(2, 2, &dev)?;
        let start = leaves.params().clone();
        // One sample of class 1, routed 0.25 left / 0.75 right; output y = 0.5 each.
        let pi = Tensor::new(&[[0.25f32, 0.75]], &dev)?;
        let y = Tensor::new(&[[0.5f32, 0.5]], &dev)?;
        let t = Tensor::new(&[[0f32, 1.0]], &dev)?;
        leaves.derivative_free_update(&pi, &y, &t, &start, 4)?;
        // update_l = pi_l * 0.5 * 1 / 0.5 = pi_l on class 1
        let p = leaves.params().to_vec2::<f32>()?;
        assert_eq!(p, vec![vec![0.0, 0.25], vec![0.0, 0.75]]);
        // Second step with a non-zero epoch start: relu(p - start/4) + update
        let start = Tensor::new(&[[0f32, 0.4], [0.0, 4.0]], &dev)?;
        leaves.derivative_free_update(&pi, &y, &t, &start, 4)?;
        let c0 = (0.25f32).exp() / (1.0 + (0.25f32).exp()); // softmax of [0, .25], class 1
        let c1 = (0.75f32).exp() / (1.0 + (0.75f32).exp());
        let p = leaves.params().to_vec2::<f32>()?;
        let want0 = (0.25f32 - 0.1).max(0.0) + 0.25 * c0 / 0.5;
        let want1 = (0.75f32 - 1.0).max(0.0) + 0.75 * c1 / 0.5;
        assert!((p[0][1] - want0).abs() < 1e-6, "{} vs {}", p[0][1], want0);
        assert!((p[1][1] - want1).abs() < 1e-6, "{} vs {}", p[1][1], want1);
        assert_eq!(p[0][0], 0.0);
        Ok(())
    }

    #[test]
    fn fused_paths_match_the_tensor_formulas() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let params = Tensor::randn(0f32, 2.0, (16, 7), &dev)?.relu()?;
        let mut leaves = Leaves::from_params(params.clone())?;
        let pi = candle_core::Var::from_tensor(&Tensor::rand(0f32, 1.0, (5, 16), &dev)?)?;
        // Mixture and its gradient against a plain matmul.
        let w = Tensor::rand(0f32, 1.0, (5, 7), &dev)?;
        let fused = leaves.mixture(pi.as_tensor())?;
        let plain = pi.as_tensor().matmul(&leaves.distributions()?)?;
        let diff = (&fused - &plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "mixture differs by {diff}");
        let g1 = (fused * &w)?.sum_all()?.backward()?;
        let g2 = (plain * &w)?.sum_all()?.backward()?;
        let (a, b) = (
            g1.get(pi.as_tensor()).unwrap(),
            g2.get(pi.as_tensor()).unwrap(),
        );
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "mixture gradients differ by {diff}");
        // Derivative-free step against the tensor formula.
        let y = (Tensor::rand(0f32, 1.0, (5, 7), &dev)? + 0.1)?;
        let t = Tensor::new(&[[1f32, 0., 0., 0., 0., 0., 0.]; 5], &dev)?;
        let start = Tensor::randn(0f32, 1.0, (16, 7), &dev)?.relu()?;
        let dist = leaves.distributions()?;
        let evidence = pi.as_tensor().t()?.matmul(&(&t / &y)?)?;
        let want = ((&params - (&start / 3.0)?)?.relu()? + (dist * evidence)?)?;
        leaves.derivative_free_update(pi.as_tensor(), &y, &t, &start, 3)?;
        let diff = (leaves.params() - want)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "update differs by {diff}");
        // Rows of chosen leaves.
        let rows = leaves.distributions_of(&[3, 0, 3])?.to_vec2::<f32>()?;
        let all = leaves.distributions()?.to_vec2::<f32>()?;
        assert_eq!(rows, vec![all[3].clone(), all[0].clone(), all[3].clone()]);
        assert!(leaves.distributions_of(&[16]).is_err());
        Ok(())
    }
}
