//! Ensembles of trees (spec §7): the prediction is the mean of the members' soft output
//! distributions, as the paper's ensembles do.

use candle_core::Tensor;

use crate::{Error, ProtoTree, Result};

/// Trees voting by averaging their class distributions.
#[derive(Debug)]
pub struct Ensemble {
    members: Vec<ProtoTree>,
}

impl Ensemble {
    /// An ensemble of `members`, which must be non-empty and agree on the class count.
    pub fn new(members: Vec<ProtoTree>) -> Result<Self> {
        let Some(first) = members.first() else {
            return Err(Error::Data("an ensemble needs at least one tree".into()));
        };
        let k = first.num_classes();
        if let Some((i, m)) = members
            .iter()
            .enumerate()
            .find(|(_, m)| m.num_classes() != k)
        {
            return Err(Error::Data(format!(
                "ensemble member {} has {} classes, member 0 has {k}",
                i,
                m.num_classes()
            )));
        }
        Ok(Self { members })
    }

    /// The members.
    pub fn members(&self) -> &[ProtoTree] {
        &self.members
    }

    /// Prototypes in use, summed over the members.
    pub fn num_prototypes(&self) -> usize {
        self.members
            .iter()
            .map(|m| m.topology().num_decisions())
            .sum()
    }

    /// Each member's soft class distribution `(b, k)` for a normalised batch.
    pub fn member_probabilities(&self, images: &Tensor) -> Result<Vec<Tensor>> {
        self.members
            .iter()
            .map(|m| Ok(m.forward(images, false)?.probabilities))
            .collect()
    }

    /// The ensemble's class distribution `(b, k)`: the mean of the members'.
    pub fn probabilities(&self, images: &Tensor) -> Result<Tensor> {
        let all = self.member_probabilities(images)?;
        Ok((Tensor::stack(&all, 0)?.sum(0)? / all.len() as f64)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Leaves;
    use candle_core::Device;

    #[test]
    fn averages_member_distributions() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let mut a = crate::testing::small_cnn_tree(1, 4, 2, 1)?;
        let mut b = crate::testing::small_cnn_tree(1, 4, 2, 2)?;
        // Both leaves of `a` say class 0 surely, both of `b` class 1 with 3:1 odds.
        a.set_leaves(Leaves::from_params(Tensor::new(
            &[[9f32, -9.0], [9.0, -9.0]],
            &dev,
        )?)?)?;
        let l = (3f32).ln();
        b.set_leaves(Leaves::from_params(Tensor::new(
            &[[0f32, l], [0.0, l]],
            &dev,
        )?)?)?;
        let images = Tensor::rand(0f32, 1.0, (2, 3, 16, 16), &dev)?;
        let pa = a.forward(&images, false)?.probabilities.to_vec2::<f32>()?;
        let pb = b.forward(&images, false)?.probabilities.to_vec2::<f32>()?;
        let e = Ensemble::new(vec![a, b])?;
        let p = e.probabilities(&images)?.to_vec2::<f32>()?;
        for i in 0..2 {
            for k in 0..2 {
                assert!((p[i][k] - (pa[i][k] + pb[i][k]) / 2.0).abs() < 1e-6);
            }
            assert!((p[i][0] - (1.0 + 0.25) / 2.0).abs() < 1e-3, "{:?}", p[i]);
        }
        assert_eq!(e.num_prototypes(), 2);
        assert!(Ensemble::new(Vec::new()).is_err());
        Ok(())
    }
}
