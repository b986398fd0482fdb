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
