//! The CUDA kernel of the derivative-free leaf step (`cuda` feature): after the evidence
//! product `πᵀ · ratio` (cuBLAS), one elementwise pass
//! `relu(params − start / n) + c ⊙ evidence` instead of four `(L, k)` temporaries.

use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::cuda_backend::WrapErr;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, Shape, Tensor};

use crate::cuda::{arg_u32, cuda_storage, output, per_element, view, MODULE, PTX};

/// The op's name in errors.
const OP: &str = "leaf update (CUDA)";

/// The step as an op on the parameters `(L, k)`, the other `(L, k)` operands held.
struct LeafStep {
    start: Tensor,
    dist: Tensor,
    evidence: Tensor,
    /// `1 / num_batches` as the f32 candle's affine map uses.
    inv: f32,
}

impl CustomOp1 for LeafStep {
    fn name(&self) -> &'static str {
        "prototree-leaf-step"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("{OP}: the CPU has its own fused update")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let shape = l.shape().clone();
        for t in [&self.start, &self.dist, &self.evidence] {
            if t.shape() != &shape {
                candle_core::bail!("{OP}: operand {:?} for parameters {:?}", t.shape(), shape);
            }
        }
        let (g_start, l_start) = self.start.storage_and_layout();
        let (g_dist, l_dist) = self.dist.storage_and_layout();
        let (g_ev, l_ev) = self.evidence.storage_and_layout();
        let start = view(cuda_storage(&g_start, OP)?, l_start, OP)?;
        let dist = view(cuda_storage(&g_dist, OP)?, l_dist, OP)?;
        let evidence = view(cuda_storage(&g_ev, OP)?, l_ev, OP)?;
        let params = view(s, l, OP)?;
        let dev = &s.device;
        let count = shape.elem_count();
        let out = output::<f32>(dev, count)?;
        let n = arg_u32(count, OP)?;
        let func = dev.get_or_load_custom_func("leaf_step_f32", MODULE, PTX)?;
        let mut launch = func.builder();
        launch
            .arg(&params)
            .arg(&start)
            .arg(&dist)
            .arg(&evidence)
            .arg(&out);
        launch.arg(&n).arg(&self.inv);
        // SAFETY: every operand holds `count` f32 values (shapes checked above), one
        // thread per element.
        unsafe { launch.launch(per_element(count)) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), shape))
    }
}

/// `relu(params − start · inv) + dist ⊙ evidence` on the GPU, without gradient.
pub(crate) fn leaf_step(
    params: &Tensor,
    start: &Tensor,
    dist: &Tensor,
    evidence: &Tensor,
    inv: f32,
) -> candle_core::Result<Tensor> {
    let op = LeafStep {
        start: start.contiguous()?,
        dist: dist.contiguous()?,
        evidence: evidence.contiguous()?,
        inv,
    };
    params.detach().contiguous()?.apply_op1_no_bwd(&op)
}
