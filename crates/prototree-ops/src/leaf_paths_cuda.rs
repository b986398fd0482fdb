//! The CUDA kernels of the leaf path probabilities (`cuda` feature): one block per image,
//! the node probabilities in shared memory, level by level, forward and its exact reverse.

use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::cuda_backend::WrapErr;
use candle_core::{CpuStorage, CudaStorage, CustomOp2, Layout, Shape, Tensor};

use crate::cuda::{arg_u32, output, per_image, view, MODULE, PTX};

/// The op's name in errors.
const OP: &str = "leaf paths (CUDA)";

/// Threads per image block.
const THREADS: u32 = 256;

/// Tree depth of `p` branches (`p + 1` a power of two, checked by the caller).
fn depth_of(p: usize) -> usize {
    (p + 1).trailing_zeros() as usize
}

/// Forward: routing `(b, p)` → leaf path probabilities `(b, p + 1)`.
pub(crate) fn forward(s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
    let (b, p) = l.shape().dims2()?;
    let dev = &s.device;
    let routing = view(s, l, OP)?;
    let out = output::<f32>(dev, b * (p + 1))?;
    if b > 0 {
        let (pu, depth) = (arg_u32(p, OP)?, arg_u32(depth_of(p), OP)?);
        let func = dev.get_or_load_custom_func("leaf_paths_fwd_f32", MODULE, PTX)?;
        let mut launch = func.builder();
        launch.arg(&routing).arg(&out).arg(&pu).arg(&depth);
        let shared = (2 * p + 1) * std::mem::size_of::<f32>();
        // SAFETY: b blocks each read p routing values and write p + 1 outputs of their
        // image; the shared memory holds the 2p + 1 node values.
        unsafe { launch.launch(per_image(b, THREADS, shared)) }.w()?;
    }
    Ok((
        CudaStorage::wrap_cuda_slice(out, dev.clone()),
        Shape::from((b, p + 1)),
    ))
}

/// The backward kernel as an op on `(routing (b, p), grad (b, p + 1))` → `(b, p)`.
struct LeafPathsGrad;

impl CustomOp2 for LeafPathsGrad {
    fn name(&self) -> &'static str {
        "prototree-leaf-paths-grad"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("{OP}: the CPU has its own backward")
    }

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (b, p) = l1.shape().dims2()?;
        if l2.shape().dims2()? != (b, p + 1) {
            candle_core::bail!(
                "{OP}: gradient {:?} for routing {:?}",
                l2.shape(),
                l1.shape()
            );
        }
        let dev = &s1.device;
        let (routing, grad) = (view(s1, l1, OP)?, view(s2, l2, OP)?);
        let out = output::<f32>(dev, b * p)?;
        if b > 0 && p > 0 {
            let (pu, depth) = (arg_u32(p, OP)?, arg_u32(depth_of(p), OP)?);
            let func = dev.get_or_load_custom_func("leaf_paths_bwd_f32", MODULE, PTX)?;
            let mut launch = func.builder();
            launch
                .arg(&routing)
                .arg(&grad)
                .arg(&out)
                .arg(&pu)
                .arg(&depth);
            let shared = 2 * (2 * p + 1) * std::mem::size_of::<f32>();
            // SAFETY: b blocks each read their image's p routing values and p + 1
            // gradients and write p outputs; shared memory holds 2 (2p + 1) values.
            unsafe { launch.launch(per_image(b, THREADS, shared)) }.w()?;
        }
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            Shape::from((b, p)),
        ))
    }
}

/// The gradient with respect to the routing probabilities `(b, p)` from the upstream
/// gradient `(b, p + 1)`.
pub(crate) fn backward(routing: &Tensor, grad: &Tensor) -> candle_core::Result<Tensor> {
    routing
        .contiguous()?
        .apply_op2_no_bwd(&grad.contiguous()?, &LeafPathsGrad)
}
