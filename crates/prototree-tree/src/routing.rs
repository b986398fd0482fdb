//! Soft routing of all leaves at once, level by level (spec §1.5).
//!
//! With `s` the similarity of each branch (heap order), the path probability of the root is
//! 1 and each level splits every node's probability into `(1 − s)` (left, "absent") and `s`
//! (right, "present"). Level `l` holds branches `2^l − 1 .. 2^(l+1) − 1`, so a level is one
//! contiguous slice and one interleave: `depth` small tensor ops for any tree size.
//! Pruned branches are pass-throughs with a constant `s` of 0 or 1.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::topology::{BranchState, Topology};
use crate::Result;

/// Constant tensors that turn raw similarities into the effective routing probabilities of
/// a (possibly pruned) topology: `s_eff = s ⊙ decision + pass_right`.
#[derive(Debug, Clone)]
pub struct RoutingMasks {
    decision: Tensor,
    pass_right: Tensor,
}

impl RoutingMasks {
    /// Masks for `topology` on `device`.
    pub fn new(topology: &Topology, device: &Device) -> Result<Self> {
        let decision: Vec<f32> = topology
            .branch_states()
            .iter()
            .map(|s| f32::from(*s == BranchState::Decision))
            .collect();
        let pass_right: Vec<f32> = topology
            .branch_states()
            .iter()
            .map(|s| f32::from(*s == BranchState::PassRight))
            .collect();
        let p = decision.len();
        Ok(Self {
            decision: Tensor::from_vec(decision, (1, p), device)?,
            pass_right: Tensor::from_vec(pass_right, (1, p), device)?,
        })
    }

    /// Effective routing probabilities (probability of going right) per branch.
    ///
    /// # Shapes
    /// - `similarities`: `(b, p)` → `(b, p)`
    pub fn apply(&self, similarities: &Tensor) -> Result<Tensor> {
        Ok(similarities
            .broadcast_mul(&self.decision)?
            .broadcast_add(&self.pass_right)?)
    }
}

/// Path probability of every leaf (left to right) from effective routing probabilities.
///
/// On the CPU in f32 this is one fused op (one pass per image forward, one backward) with
/// the same arithmetic as the level-by-level tensor version
/// ([`leaf_path_probabilities_generic`]), which runs elsewhere.
///
/// # Shapes
/// - `routing`: `(b, 2^depth − 1)` in heap order → `(b, 2^depth)`
pub fn leaf_path_probabilities(routing: &Tensor, depth: usize) -> Result<Tensor> {
    let (_, p) = routing.dims2()?;
    if p + 1 != 1usize << depth {
        return Err(crate::Error::ShapeMismatch {
            tensor: "routing".into(),
            expected: vec![(1usize << depth) - 1],
            got: vec![p],
        });
    }
    if routing.device().is_cpu() && routing.dtype() == DType::F32 {
        return Ok(routing.contiguous()?.apply_op1(LeafPaths)?);
    }
    leaf_path_probabilities_generic(routing, depth)
}

/// [`leaf_path_probabilities`] with plain tensor ops, level by level (any device, dtype).
pub fn leaf_path_probabilities_generic(routing: &Tensor, depth: usize) -> Result<Tensor> {
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

fn cpu_rows<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("leaf-path op needs a contiguous input"),
    }
}

impl CustomOp1 for LeafPaths {
    fn name(&self) -> &'static str {
        "prototree-leaf-paths"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, p) = l.shape().dims2()?;
        let routing = cpu_rows(s, l)?;
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
        let gs = crate::min_distance_op::with_cpu_slice(&arg, |routing| {
            crate::min_distance_op::with_cpu_slice(&grad, |g| {
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
    use crate::topology::Direction;

    #[test]
    fn depth_two_by_hand() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        // heap order: root, L, R
        let s = Tensor::new(&[[0.2f32, 0.7, 0.4]], &dev)?;
        let p = leaf_path_probabilities(&s, 2)?.to_vec2::<f32>()?;
        let want = [0.8 * 0.3, 0.8 * 0.7, 0.2 * 0.6, 0.2 * 0.4];
        for (a, b) in p[0].iter().zip(want) {
            assert!((a - b).abs() < 1e-7, "{a} vs {b}");
        }
        Ok(())
    }

    #[test]
    fn fused_op_matches_the_level_by_level_ops() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let s = candle_core::Var::from_tensor(&Tensor::rand(0f32, 1.0, (5, 31), &dev)?)?;
        let w = Tensor::rand(0f32, 1.0, (5, 32), &dev)?;
        let fused = leaf_path_probabilities(s.as_tensor(), 5)?;
        let generic = leaf_path_probabilities_generic(s.as_tensor(), 5)?;
        let diff = (&fused - &generic)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-7, "values differ by {diff}");
        let g1 = (fused * &w)?.sum_all()?.backward()?;
        let g2 = (generic * &w)?.sum_all()?.backward()?;
        let (a, b) = (
            g1.get(s.as_tensor()).unwrap(),
            g2.get(s.as_tensor()).unwrap(),
        );
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "gradients differ by {diff}");
        assert!(leaf_path_probabilities(s.as_tensor(), 4).is_err());
        Ok(())
    }

    #[test]
    fn pruned_branch_passes_through() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let mut topo = Topology::complete(2)?;
        topo.prune_branch(2, Direction::Left); // right child of root keeps its left child
        let masks = RoutingMasks::new(&topo, &dev)?;
        let s = masks.apply(&Tensor::new(&[[0.2f32, 0.7, 0.4]], &dev)?)?;
        let p = leaf_path_probabilities(&s, 2)?.to_vec2::<f32>()?;
        let want = [0.8 * 0.3, 0.8 * 0.7, 0.2, 0.0];
        for (a, b) in p[0].iter().zip(want) {
            assert!((a - b).abs() < 1e-7, "{a} vs {b}");
        }
        Ok(())
    }
}
