//! Helpers for tests of the fused kernels against their generic twins, for this crate and
//! the crates above it.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::dispatch::with_generic_ops;

/// Which path a computation ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpPath {
    /// The device's fused kernels where they apply (the default).
    Fused,
    /// Every op on its generic path ([`with_generic_ops`]).
    Generic,
}

/// Runs `f` once on the default path and once with every op forced onto its generic path.
pub fn on_both_paths<E>(mut f: impl FnMut(OpPath) -> Result<(), E>) -> Result<(), E> {
    f(OpPath::Fused)?;
    with_generic_ops(|| f(OpPath::Generic))
}

/// Largest difference between two tensors of one shape, relative to the largest magnitude
/// of `reference` (at least 1); an error when the shapes differ.
pub fn max_relative_diff(value: &Tensor, reference: &Tensor) -> candle_core::Result<f32> {
    if value.dims() != reference.dims() {
        candle_core::bail!(
            "shapes differ: {:?} vs {:?}",
            value.dims(),
            reference.dims()
        );
    }
    let (value, reference) = (
        value.to_dtype(candle_core::DType::F32)?,
        reference.to_dtype(candle_core::DType::F32)?,
    );
    let scale = reference.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
    let diff = (value - reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
    Ok(diff / scale)
}

/// The worst [`max_relative_diff`] between the tensors `f` returns (outputs, gradients) on
/// the fused path and on the generic path.
pub fn fused_vs_generic_diff(
    mut f: impl FnMut() -> candle_core::Result<Vec<Tensor>>,
) -> candle_core::Result<f32> {
    let fused = f()?;
    let generic = with_generic_ops(&mut f)?;
    if fused.len() != generic.len() {
        candle_core::bail!("{} fused results vs {} generic", fused.len(), generic.len());
    }
    let mut worst = 0f32;
    for (a, b) in fused.iter().zip(&generic) {
        worst = worst.max(max_relative_diff(a, b)?);
    }
    Ok(worst)
}

/// Largest [`max_relative_diff`] between the gradients of `vars` in two stores; an error
/// when either store lacks one.
pub fn max_relative_grad_diff(
    ours: &GradStore,
    theirs: &GradStore,
    vars: &[&Var],
) -> candle_core::Result<f32> {
    let mut worst = 0f32;
    for v in vars {
        let (Some(a), Some(b)) = (ours.get(v.as_tensor()), theirs.get(v.as_tensor())) else {
            candle_core::bail!("a variable has no gradient");
        };
        worst = worst.max(max_relative_diff(a, b)?);
    }
    Ok(worst)
}

/// candle's `conv2d` (with `groups`) of the explicitly zero-padded channels-last input,
/// back to channels-last: the independent reference for the asymmetric "SAME" paddings.
#[cfg(test)]
pub(crate) fn candle_padded_conv(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    rows: (usize, usize),
    cols: (usize, usize),
    groups: usize,
) -> candle_core::Result<Tensor> {
    crate::nhwc::pad_nhwc(x, rows, cols)?
        .permute((0, 3, 1, 2))?
        .conv2d(weight, 0, stride, 1, groups)?
        .permute((0, 2, 3, 1))
}

/// The gradient of `sum(y · up)` with respect to `x`: the backward pass of `y` under the
/// upstream gradient `up`; an error when `y` does not depend on `x`.
pub fn weighted_sum_grad(y: &Tensor, up: &Tensor, x: &Var) -> candle_core::Result<Tensor> {
    let grads = (y * up)?.sum_all()?.backward()?;
    match grads.get(x.as_tensor()) {
        Some(g) => Ok(g.clone()),
        None => candle_core::bail!("no gradient"),
    }
}

/// One op's agreement between a device and the generic path on the CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct OpParity {
    /// What was compared (op, and value or gradient).
    pub check: &'static str,
    /// The largest [`max_relative_diff`] (for greedy paths: 1 when a leaf differs, else
    /// the largest similarity difference).
    pub max_rel_diff: f32,
}

/// The tree-head ops on `device` (each on the path it takes there: the CUDA kernels on a
/// GPU, the fused kernels on the CPU) against the generic path on the CPU, on the same
/// random inputs: min-pooled distances and both their gradients, leaf path probabilities
/// and their gradient, the leaf mixture and update, greedy paths.
pub fn tree_head_parity(device: &candle_core::Device) -> candle_core::Result<Vec<OpParity>> {
    use crate::{greedy_paths, leaf_mixture, leaf_path_probabilities, leaf_update, min_distances};
    use candle_core::Device;
    let cpu = Device::Cpu;
    let on = |t: &Tensor| t.to_device(device);
    let back = |t: Tensor| t.to_device(&cpu);
    let mut out = Vec::new();
    let mut push = |check, a: &Tensor, b: &Tensor| -> candle_core::Result<()> {
        out.push(OpParity {
            check,
            max_rel_diff: max_relative_diff(&back(a.clone())?, b)?,
        });
        Ok(())
    };
    // Distances: 8 images of 7×7 patches of 64 channels, 31 prototypes stored (P, d, 1, 1).
    let (b, n, d, depth) = (8usize, 49usize, 64usize, 5usize);
    let p = (1usize << depth) - 1;
    let z = Tensor::rand(0f32, 1.0, (b, n, d), &cpu)?;
    let protos = Tensor::rand(0f32, 1.0, (p, d, 1, 1), &cpu)?;
    let up = Tensor::rand(0f32, 1.0, (b, p), &cpu)?;
    let (zd, pd) = (
        Var::from_tensor(&on(&z)?)?,
        Var::from_tensor(&on(&protos)?)?,
    );
    let dist = min_distances(zd.as_tensor(), pd.as_tensor())?;
    let (zc, pc) = (Var::from_tensor(&z)?, Var::from_tensor(&protos)?);
    let generic = with_generic_ops(|| min_distances(zc.as_tensor(), pc.as_tensor()))?;
    push("min_distances", &dist, &generic)?;
    let up_d = on(&up)?;
    push(
        "min_distances d/dpatches",
        &weighted_sum_grad(&dist, &up_d, &zd)?,
        &weighted_sum_grad(&generic, &up, &zc)?,
    )?;
    push(
        "min_distances d/dprototypes",
        &weighted_sum_grad(&dist, &up_d, &pd)?,
        &weighted_sum_grad(&generic, &up, &pc)?,
    )?;
    // Leaf paths of depth 5 and 9.
    for (depth, name, grad_name) in [
        (
            5usize,
            "leaf_paths depth 5",
            "leaf_paths depth 5 d/drouting",
        ),
        (9, "leaf_paths depth 9", "leaf_paths depth 9 d/drouting"),
    ] {
        let s = Tensor::rand(0f32, 1.0, (b, (1 << depth) - 1), &cpu)?;
        let up = Tensor::rand(0f32, 1.0, (b, 1 << depth), &cpu)?;
        let (sd, sc) = (Var::from_tensor(&on(&s)?)?, Var::from_tensor(&s)?);
        let pi = leaf_path_probabilities(sd.as_tensor(), depth)?;
        let generic = with_generic_ops(|| leaf_path_probabilities(sc.as_tensor(), depth))?;
        push(name, &pi, &generic)?;
        push(
            grad_name,
            &weighted_sum_grad(&pi, &on(&up)?, &sd)?,
            &weighted_sum_grad(&generic, &up, &sc)?,
        )?;
    }
    // Leaves: 32 leaves, 7 classes.
    let (leaves, k) = (32usize, 7usize);
    let params = Tensor::randn(0f32, 2.0, (leaves, k), &cpu)?.relu()?;
    let dist_c = Tensor::rand(0.01f32, 1.0, (leaves, k), &cpu)?;
    let pi = Tensor::rand(0f32, 1.0, (b, leaves), &cpu)?;
    let y = (Tensor::rand(0f32, 1.0, (b, k), &cpu)? + 0.1)?;
    let t = Tensor::ones((b, k), candle_core::DType::F32, &cpu)?
        .narrow(1, 0, 1)?
        .pad_with_zeros(1, 0, k - 1)?;
    let start = Tensor::randn(0f32, 1.0, (leaves, k), &cpu)?.relu()?;
    let mix = leaf_mixture(&on(&pi)?, on(&dist_c)?)?;
    let generic = with_generic_ops(|| leaf_mixture(&pi, dist_c.clone()))?;
    push("leaf_mixture", &mix, &generic)?;
    let next = leaf_update(
        (&on(&params)?, on(&dist_c)?),
        &on(&pi)?,
        &on(&y)?,
        &on(&t)?,
        &on(&start)?,
        3,
    )?;
    let generic =
        with_generic_ops(|| leaf_update((&params, dist_c.clone()), &pi, &y, &t, &start, 3))?;
    push("leaf_update", &next, &generic)?;
    // Greedy: prototypes near some patches, so both directions occur.
    use crate::GreedyBranch::{Decide, Left, Right};
    let branches = [Decide, Decide, Right, Decide, Left, Decide, Decide];
    let gp = (z.get(0)?.narrow(0, 0, 7)? * 0.98)?;
    let ours = greedy_paths(&on(&z)?, &on(&gp)?, &branches)?;
    let theirs = with_generic_ops(|| greedy_paths(&z, &gp, &branches))?;
    let mut worst = 0f32;
    for (a, b) in ours.iter().zip(&theirs) {
        if a.leaf != b.leaf || a.decisions.len() != b.decisions.len() {
            worst = 1.0;
            continue;
        }
        for (x, y) in a.decisions.iter().zip(&b.decisions) {
            worst = worst.max(if x.heap == y.heap {
                (x.similarity - y.similarity).abs()
            } else {
                1.0
            });
        }
    }
    if ours.len() != theirs.len() {
        worst = 1.0;
    }
    out.push(OpParity {
        check: "greedy_paths",
        max_rel_diff: worst,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_head_parity_on_the_cpu() -> candle_core::Result<()> {
        for r in tree_head_parity(&candle_core::Device::Cpu)? {
            assert!(r.max_rel_diff < 1e-4, "{r:?}");
        }
        Ok(())
    }
}
