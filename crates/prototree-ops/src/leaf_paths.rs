//! Path probabilities of all leaves at once from the routing probabilities (spec §1.5).
//!
//! With `s` the probability of going right at each branch (heap order), the root's path
//! probability is 1 and each level splits every node's probability into `(1 − s)` (left)
//! and `s` (right). Fused on the CPU (one pass per image forward, one backward) and on a
//! CUDA device (one kernel each way, `leaf_paths_cuda`, for trees whose nodes fit a
//! block's shared memory: depth ≤ 11); elsewhere level by level: `depth` small tensor ops
//! for any tree size.

use candle_core::{CpuStorage, CustomOp1, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::{fused_cpu_fwd, with_cpu_slice};
use crate::dispatch::{cuda_f32, fused_cpu_f32};

/// Path probability of every leaf (left to right) from effective routing probabilities.
///
/// On the CPU in f32 this is one fused op (one pass per image forward, one backward) with
/// the same arithmetic as the level-by-level tensor version
/// ([`leaf_path_probabilities_generic`]), which runs elsewhere.
///
/// # Shapes
/// - `routing`: `(b, 2^depth − 1)` in heap order → `(b, 2^depth)`
pub fn leaf_path_probabilities(routing: &Tensor, depth: usize) -> candle_core::Result<Tensor> {
    let (_, p) = routing.dims2()?;
    if p + 1 != 1usize << depth {
        candle_core::bail!(
            "routing: {p} branches for a tree of depth {depth} ({} expected)",
            (1usize << depth) - 1
        );
    }
    if fused_cpu_f32(&[routing]) || (cuda_f32(&[routing]) && fits_a_cuda_block(p)) {
        return routing.contiguous()?.apply_op1(LeafPaths);
    }
    leaf_path_probabilities_generic(routing, depth)
}

/// Whether the CUDA kernels' shared memory holds a tree of `p` branches (the backward
/// keeps `2 (2p + 1)` values: depth ≤ 11 in 48 KiB).
fn fits_a_cuda_block(p: usize) -> bool {
    2 * (2 * p + 1) * std::mem::size_of::<f32>() <= 48 * 1024
}

/// [`leaf_path_probabilities`] with plain tensor ops, level by level (any device, dtype).
pub fn leaf_path_probabilities_generic(
    routing: &Tensor,
    depth: usize,
) -> candle_core::Result<Tensor> {
    let b = routing.dim(0)?;
    let mut path = Tensor::ones((b, 1), routing.dtype(), routing.device())?;
    for level in 0..depth {
        let width = 1usize << level;
        let s = routing.narrow(1, width - 1, width)?;
        let right = (&path * &s)?;
        let left = (&path - &right)?; // path · (1 − s)
        path = Tensor::stack(&[left, right], 2)?.reshape((b, 2 * width))?;
    }
    Ok(path)
}

/// The fused CPU op behind [`leaf_path_probabilities`]: `(b, P)` → `(b, P + 1)`.
struct LeafPaths;

/// Path probability of every node of one image, heap order (`2P + 1` values: branches,
/// then leaves left to right): `pa(2h+2) = pa(h)·s_h`, `pa(2h+1) = pa(h) − pa(2h+2)`.
fn node_paths(s: &[f32], nodes: &mut [f32]) {
    nodes[0] = 1.0;
    for (h, &sh) in s.iter().enumerate() {
        let right = nodes[h] * sh;
        nodes[2 * h + 2] = right;
        nodes[2 * h + 1] = nodes[h] - right;
    }
}

impl CustomOp1 for LeafPaths {
    fn name(&self) -> &'static str {
        "prototree-leaf-paths"
    }

    fused_cpu_fwd!(self, "leaf paths", |(routing, l)| {
        let (b, p) = l.shape().dims2()?;
        let leaves = p + 1;
        let mut out = vec![0f32; b * leaves];
        if p > 0 {
            out.par_chunks_mut(leaves)
                .zip(routing.par_chunks(p))
                .for_each_init(
                    || vec![0f32; 2 * p + 1],
                    |nodes, (o, r)| {
                        node_paths(r, nodes);
                        o.copy_from_slice(&nodes[p..]);
                    },
                );
        } else {
            out.fill(1.0);
        }
        Ok((CpuStorage::F32(out), Shape::from((b, leaves))))
    });

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::leaf_paths_cuda::forward(s, l)
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (b, p) = arg.dims2()?;
        let arg = arg.contiguous()?;
        let grad = grad_res.contiguous()?;
        #[cfg(feature = "cuda")]
        if arg.device().is_cuda() {
            return Ok(Some(crate::leaf_paths_cuda::backward(&arg, &grad)?));
        }
        let gs = with_cpu_slice(&arg, "leaf paths", |routing| {
            with_cpu_slice(&grad, "leaf paths", |g| {
                let mut gs = vec![0f32; b * p];
                if p == 0 {
                    return gs;
                }
                gs.par_chunks_mut(p)
                    .zip(routing.par_chunks(p))
                    .zip(g.par_chunks(p + 1))
                    .for_each_init(
                        || (vec![0f32; 2 * p + 1], vec![0f32; 2 * p + 1]),
                        |(nodes, gnodes), ((gsr, r), gr)| {
                            node_paths(r, nodes);
                            gnodes[p..].copy_from_slice(gr);
                            // Reverse of `right = pa·s; left = pa − right`.
                            for h in (0..p).rev() {
                                let g_right = gnodes[2 * h + 2] - gnodes[2 * h + 1];
                                gnodes[h] = gnodes[2 * h + 1] + g_right * r[h];
                                gsr[h] = g_right * nodes[h];
                            }
                        },
                    );
                gs
            })
        })??;
        Ok(Some(Tensor::from_vec(gs, (b, p), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fused_vs_generic_diff, weighted_sum_grad};
    use candle_core::{Device, Var};

    #[test]
    fn fused_path_probabilities_match_generic() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let depth = 4;
        let s = Var::from_tensor(&Tensor::rand(0f32, 1.0, (3, (1 << depth) - 1), &dev)?)?;
        let up = Tensor::rand(0f32, 1.0, (3, 1 << depth), &dev)?;
        let diff = fused_vs_generic_diff(|| {
            let pi = leaf_path_probabilities(s.as_tensor(), depth)?;
            let g = weighted_sum_grad(&pi, &up, &s)?;
            Ok(vec![pi, g])
        })?;
        assert!(diff < 1e-6, "{diff}");
        assert!(leaf_path_probabilities(s.as_tensor(), depth + 1).is_err());
        assert!(fits_a_cuda_block((1 << 11) - 1) && !fits_a_cuda_block((1 << 12) - 1));
        Ok(())
    }
}
