//! Soft routing of all leaves at once, level by level (spec §1.5).
//!
//! With `s` the similarity of each branch (heap order), the path probability of the root is
//! 1 and each level splits every node's probability into `(1 − s)` (left, "absent") and `s`
//! (right, "present"). Level `l` holds branches `2^l − 1 .. 2^(l+1) − 1`, so a level is one
//! contiguous slice and one interleave: `depth` small tensor ops for any tree size.
//! Pruned branches are pass-throughs with a constant `s` of 0 or 1.

use candle_core::{Device, Tensor};

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

pub use prototree_ops::{leaf_path_probabilities, leaf_path_probabilities_generic};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Direction;
    use prototree_ops::testing::weighted_sum_grad;

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
        let (a, b) = (
            weighted_sum_grad(&fused, &w, &s)?,
            weighted_sum_grad(&generic, &w, &s)?,
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
