//! The min-pooled prototype distance as the GPU computes it: one matrix product (cuBLAS
//! on CUDA) for the cross terms, one fused kernel that keeps each (image, prototype)'s
//! nearest patch, then the distance to that patch alone, `sqrt(‖z* − p‖² + eps)`, as
//! tensor ops on `(b, P, d)`: its autograd backward is the sparse one of the fused CPU
//! kernel (gather → scatter-add into the winning patches, `O(b·P·d)`), not the dense
//! `(b, n, P)` masks of the generic path.
//!
//! The nearest-patch op has a CPU twin (the same loop), so the whole path runs and is
//! tested on the CPU too; [`crate::distance::min_distances`] takes it for f32 tensors on a
//! CUDA device. Values equal the generic path's up to float rounding (the distance is
//! formed directly instead of by `‖z‖² − 2 z·p + ‖p‖²`).

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use crate::cpu::contiguous_f32;

/// The op's name in errors.
const OP: &str = "nearest patch";

/// The nearest patch of every (image, prototype) from the cross terms and the squared
/// norms: `(cross (b·n, P), patch_sq (b·n), proto_sq (P))` → u32 `(b, P)`, the first patch
/// reaching `min_i |patch_sq_i − 2 cross_ij + proto_sq_j|` (the CPU kernel's tie rule).
struct NearestPatch {
    images: usize,
}

impl NearestPatch {
    /// `(b, n, P)` of the op's inputs, checked.
    fn dims(
        &self,
        cross: &Layout,
        patch_sq: &Layout,
        proto_sq: &Layout,
    ) -> candle_core::Result<(usize, usize, usize)> {
        let (rows, p) = cross.shape().dims2()?;
        let b = self.images;
        if b == 0
            || rows % b != 0
            || patch_sq.shape().elem_count() != rows
            || proto_sq.shape().elem_count() != p
        {
            candle_core::bail!(
                "{OP}: cross terms {:?}, patch norms {:?}, prototype norms {:?} for {b} images",
                cross.shape(),
                patch_sq.shape(),
                proto_sq.shape()
            );
        }
        Ok((b, rows / b, p))
    }
}

/// The CPU loop of [`NearestPatch`].
fn nearest_cpu(
    cross: &[f32],
    patch_sq: &[f32],
    proto_sq: &[f32],
    (b, n, p): (usize, usize, usize),
) -> Vec<u32> {
    let mut winners = vec![0u32; b * p];
    for bi in 0..b {
        for (j, &pp) in proto_sq.iter().enumerate() {
            let mut best = f32::INFINITY;
            let mut arg = 0u32;
            for i in 0..n {
                let v = (patch_sq[bi * n + i] - 2.0 * cross[(bi * n + i) * p + j] + pp).abs();
                if v < best {
                    best = v;
                    arg = i as u32;
                }
            }
            winners[bi * p + j] = arg;
        }
    }
    winners
}

impl CustomOp3 for NearestPatch {
    fn name(&self) -> &'static str {
        "prototree-nearest-patch"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = self.dims(l1, l2, l3)?;
        let cross = contiguous_f32(s1, l1, OP)?;
        let patch_sq = contiguous_f32(s2, l2, OP)?;
        let proto_sq = contiguous_f32(s3, l3, OP)?;
        let winners = nearest_cpu(cross, patch_sq, proto_sq, dims);
        Ok((CpuStorage::U32(winners), Shape::from((dims.0, dims.2))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use crate::cuda::{arg_u32, output, per_element, view, MODULE, PTX};
        use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
        use candle_core::cuda_backend::WrapErr;

        let (b, n, p) = self.dims(l1, l2, l3)?;
        let dev = &s1.device;
        let (cross, patch_sq, proto_sq) = (view(s1, l1, OP)?, view(s2, l2, OP)?, view(s3, l3, OP)?);
        let winners = output::<u32>(dev, b * p)?;
        let (bu, nu, pu) = (arg_u32(b, OP)?, arg_u32(n, OP)?, arg_u32(p, OP)?);
        let func = dev.get_or_load_custom_func("min_argmin_f32", MODULE, PTX)?;
        let mut launch = func.builder();
        launch
            .arg(&cross)
            .arg(&patch_sq)
            .arg(&proto_sq)
            .arg(&winners);
        launch.arg(&bu).arg(&nu).arg(&pu);
        // SAFETY: the kernel reads b·n·P, b·n and P f32 values and writes b·P u32 values,
        // the lengths of the views and the output checked above.
        unsafe { launch.launch(per_element(b * p)) }.w()?;
        let winners = candle_core::CudaStorage::wrap_cuda_slice(winners, dev.clone());
        Ok((winners, Shape::from((b, p))))
    }
}

/// The index of the nearest patch of every (image, prototype), u32 `(b, P)`, without
/// gradient: one matrix product and the nearest-patch op.
///
/// # Shapes
/// - `patches`: `(b, n, d)`, `prototypes`: `(P, d)` → `(b, P)`
pub fn nearest_patches(patches: &Tensor, prototypes: &Tensor) -> candle_core::Result<Tensor> {
    let (b, n, d) = patches.dims3()?;
    let flat = patches.detach().reshape((b * n, d))?;
    let protos = prototypes.detach();
    let cross = flat.matmul(&protos.t()?)?; // (b·n, P)
    let patch_sq = flat.sqr()?.sum(1)?; // (b·n)
    let proto_sq = protos.sqr()?.sum(1)?; // (P)
    cross.contiguous()?.apply_op3_no_bwd(
        &patch_sq.contiguous()?,
        &proto_sq.contiguous()?,
        &NearestPatch { images: b },
    )
}

/// Minimum distance `sqrt(min ‖z − p‖² + eps)` `(b, P)` and the nearest patch `(b, P)`
/// (u32): [`nearest_patches`], then the distance to the winning patch, differentiable
/// with respect to both inputs through that patch only. `prototypes` is `(P, d)` or
/// `(P, d, 1, 1)`.
pub fn min_distances_by_nearest(
    patches: &Tensor,
    prototypes: &Tensor,
    eps: f64,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (b, _, d) = patches.dims3()?;
    let p = prototypes.dim(0)?;
    if prototypes.elem_count() != p * d {
        candle_core::bail!(
            "prototypes {:?} for patches of length {d}",
            prototypes.dims()
        );
    }
    let protos = prototypes.reshape((p, d))?;
    let winners = nearest_patches(patches, &protos)?;
    if winners.dtype() != DType::U32 {
        candle_core::bail!("{OP}: indices of dtype {:?}", winners.dtype());
    }
    let index = winners
        .unsqueeze(2)?
        .broadcast_as((b, p, d))?
        .contiguous()?;
    let nearest = patches.contiguous()?.gather(&index, 1)?; // (b, P, d)
    let diff = nearest.broadcast_sub(&protos.unsqueeze(0)?)?;
    let dist = (diff.sqr()?.sum(2)? + eps)?.sqrt()?;
    Ok((dist, winners))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::weighted_sum_grad;
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_generic_path_in_values_winners_and_gradients() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let z = Var::from_tensor(&Tensor::rand(0f32, 1.0, (5, 49, 37), &dev)?)?;
        let p = Var::from_tensor(&Tensor::rand(0f32, 1.0, (13, 37, 1, 1), &dev)?)?;
        let flat = p.as_tensor().reshape((13, 37))?;
        let w = Tensor::rand(0f32, 1.0, (5, 13), &dev)?;
        let eps = crate::distance::DISTANCE_EPS;
        let (dist, winners) = min_distances_by_nearest(z.as_tensor(), p.as_tensor(), eps)?;
        let generic = crate::distance::min_distances_generic(z.as_tensor(), &flat)?;
        let diff = crate::testing::max_relative_diff(&dist, &generic)?;
        assert!(diff < 1e-5, "values differ by {diff}");
        let (_, generic_arg) = crate::distance::distance_maps(z.as_tensor(), &flat)?;
        assert_eq!(winners.to_vec2::<u32>()?, generic_arg.to_vec2::<u32>()?);
        for v in [&z, &p] {
            let a = weighted_sum_grad(&dist, &w, v)?;
            let b = weighted_sum_grad(&generic, &w, v)?;
            assert_eq!(a.dims(), v.dims());
            let diff = crate::testing::max_relative_diff(&a, &b)?;
            assert!(diff < 1e-4, "gradients differ by {diff}");
        }
        Ok(())
    }

    #[test]
    fn rejects_mismatched_shapes() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let z = Tensor::rand(0f32, 1.0, (2, 4, 3), &dev)?;
        let p = Tensor::rand(0f32, 1.0, (5, 4), &dev)?;
        assert!(min_distances_by_nearest(&z, &p, 1e-14).is_err());
        Ok(())
    }
}
