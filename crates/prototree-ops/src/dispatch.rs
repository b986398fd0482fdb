//! Which path an op takes: its fused CPU kernel, or the generic path of plain candle ops.
//!
//! Every public op of this crate asks [`fused_cpu_f32`] once, inside the op: the fused
//! kernels cover contiguous-or-not f32 tensors on the CPU; everything else (CUDA, Metal,
//! other dtypes) takes the generic path, which is exactly the code a GPU runs. Setting the
//! environment variable `PROTOTREE_GENERIC_OPS=1` (or calling [`with_generic_ops`] on a
//! thread) makes every op take its generic path on the CPU too, so a CPU-only machine can
//! exercise the GPU's code end to end. On a CUDA device in f32 the tree-head ops
//! (min-distance, leaf paths, leaf update, greedy path-only) run their own CUDA kernels
//! ([`cuda_f32`], `cuda` feature); the switch forces the generic path there too.

use std::cell::Cell;

use candle_core::{DType, Tensor};

use crate::switch::Switch;

/// The environment variable that forces the generic path of every op (`1`, `true`, `yes`).
pub const GENERIC_OPS_ENV: &str = "PROTOTREE_GENERIC_OPS";

thread_local! {
    static FORCED_HERE: Cell<bool> = const { Cell::new(false) };
}

static GENERIC: Switch = Switch::new(GENERIC_OPS_ENV, &FORCED_HERE);

/// Whether the ops take their generic path on this thread: forced by
/// [`GENERIC_OPS_ENV`] or inside [`with_generic_ops`].
pub fn generic_ops_forced() -> bool {
    GENERIC.is_on()
}

/// Runs `f` with every op called from this thread on its generic path (nested calls keep
/// it forced; the previous setting is restored afterwards, also on a panic).
pub fn with_generic_ops<R>(f: impl FnOnce() -> R) -> R {
    GENERIC.scoped(f)
}

/// Whether the fused CPU kernel applies: every tensor f32 on the CPU and the generic path
/// not forced.
pub fn fused_cpu_f32(tensors: &[&Tensor]) -> bool {
    !generic_ops_forced()
        && tensors
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Whether the CUDA kernels of the tree-head ops apply: every tensor f32 on a CUDA device
/// and the generic path not forced (always false in a build without the `cuda` feature).
pub fn cuda_f32(tensors: &[&Tensor]) -> bool {
    cfg!(feature = "cuda")
        && !generic_ops_forced()
        && tensors
            .iter()
            .all(|t| t.device().is_cuda() && t.dtype() == DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn forcing_is_scoped_to_the_closure() -> candle_core::Result<()> {
        let t = Tensor::zeros(2, DType::F32, &Device::Cpu)?;
        let before = fused_cpu_f32(&[&t]);
        assert!(!with_generic_ops(|| fused_cpu_f32(&[&t])));
        assert_eq!(fused_cpu_f32(&[&t]), before);
        let f64_tensor = Tensor::zeros(2, DType::F64, &Device::Cpu)?;
        assert!(!fused_cpu_f32(&[&t, &f64_tensor]));
        assert!(!cuda_f32(&[&t]));
        Ok(())
    }
}
