//! L2 distances between latent patches and all prototypes at once (spec §1.4).
//!
//! `‖z − p‖² = ‖z‖² − 2 z·p + ‖p‖²`: one `(b·h·w, d) × (d, P)` matrix product for every
//! prototype and patch, never a loop over nodes. The distance is the reference's
//! `sqrt(|dist²| + 1e-14)`; the minimum over patches is taken before the square root, which
//! gives the same values because the root is monotone.

use candle_core::{Tensor, D};

use crate::dispatch::{cuda_f32, fused_cpu_f32};

/// The ops' result type (candle's errors).
type Result<T> = candle_core::Result<T>;

/// The reference's epsilon under the square root.
pub const DISTANCE_EPS: f64 = 1e-14;

/// Squared distances of every patch to every prototype, `|·|`-guarded against round-off.
///
/// # Shapes
/// - `patches`: `(b, n, d)` latent patches (`n = h·w`)
/// - `prototypes`: `(p, d)`
/// - returns `(b, n, p)`
pub fn squared_distances(patches: &Tensor, prototypes: &Tensor) -> Result<Tensor> {
    let (b, n, d) = patches.dims3()?;
    let flat = patches.reshape((b * n, d))?;
    let patch_sq = flat.sqr()?.sum_keepdim(1)?; // (b·n, 1)
    let proto_sq = prototypes.sqr()?.sum(1)?.unsqueeze(0)?; // (1, p)
    let cross = flat.matmul(&prototypes.t()?)?; // (b·n, p)
    let dist_sq = (patch_sq.broadcast_add(&proto_sq)? - (cross * 2.0)?)?;
    let p = prototypes.dim(0)?;
    dist_sq.abs()?.reshape((b, n, p))
}

/// Distances `sqrt(|dist²| + eps)` from squared distances.
pub fn distances_from_squared(dist_sq: &Tensor) -> Result<Tensor> {
    (dist_sq + DISTANCE_EPS)?.sqrt()
}

/// The minimum distance of each prototype over all patches of each image (global min-pool).
///
/// On the CPU in f32 this runs the fused kernel of [`crate::min_distance_cpu`] (same values,
/// sparse backward); on a CUDA device in f32 one cuBLAS product, the fused nearest-patch
/// kernel and the distance to the winning patch
/// ([`crate::min_distance_argmin::min_distances_by_nearest`], sparse backward too);
/// elsewhere the generic tensor-op path.
///
/// # Shapes
/// - `patches`: `(b, n, d)`, `prototypes`: `(p, d)` or `(p, d, 1, 1)`
/// - returns `(b, p)`
pub fn min_distances(patches: &Tensor, prototypes: &Tensor) -> Result<Tensor> {
    if fused_cpu_f32(&[patches, prototypes]) {
        return Ok(crate::min_distance_cpu::min_distances_fused(
            patches,
            prototypes,
            DISTANCE_EPS,
        )?
        .0);
    }
    if cuda_f32(&[patches, prototypes]) {
        return Ok(crate::min_distance_argmin::min_distances_by_nearest(
            patches,
            prototypes,
            DISTANCE_EPS,
        )?
        .0);
    }
    let p = prototypes.dim(0)?;
    let d = prototypes.elem_count() / p.max(1);
    min_distances_generic(patches, &prototypes.reshape((p, d))?)
}

/// [`min_distances`] with plain tensor ops (any device and dtype; dense backward).
pub fn min_distances_generic(patches: &Tensor, prototypes: &Tensor) -> Result<Tensor> {
    let dist_sq = squared_distances(patches, prototypes)?;
    distances_from_squared(&dist_sq.min(1)?)
}

/// The full distance map and the index of the nearest patch per image and prototype.
///
/// # Shapes
/// - `patches`: `(b, n, d)`, `prototypes`: `(p, d)`
/// - returns distances `(b, n, p)` and argmin indices `(b, p)` (u32, row-major `h·w`)
pub fn distance_maps(patches: &Tensor, prototypes: &Tensor) -> Result<(Tensor, Tensor)> {
    let dist_sq = squared_distances(patches, prototypes)?;
    let argmin = dist_sq.argmin_keepdim(1)?.squeeze(1)?;
    Ok((distances_from_squared(&dist_sq)?, argmin))
}

/// Similarity `exp(−distance)` (spec §1.4).
pub fn similarity(distances: &Tensor) -> Result<Tensor> {
    distances.neg()?.exp()
}

/// Sum over the last axis, kept for callers that need `‖z‖²` of patches.
pub fn squared_norms(x: &Tensor) -> Result<Tensor> {
    x.sqr()?.sum_keepdim(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_direct_computation() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let patches = Tensor::new(&[[[0f32, 0.0], [1.0, 1.0], [3.0, 4.0]]], &dev)?; // (1,3,2)
        let protos = Tensor::new(&[[3f32, 4.0], [1.0, 0.0]], &dev)?; // (2,2)
        let d = min_distances(&patches, &protos)?.to_vec2::<f32>()?;
        // proto 0: nearest is (3,4) at distance 0 -> sqrt(1e-14) = 1e-7
        assert!((d[0][0] - 1e-7).abs() < 1e-6);
        // proto 1: distances 1, 1, sqrt(4+16)=4.47 -> 1
        assert!((d[0][1] - 1.0).abs() < 1e-6);
        let (maps, argmin) = distance_maps(&patches, &protos)?;
        assert_eq!(maps.dims(), &[1, 3, 2]);
        assert_eq!(argmin.to_vec2::<u32>()?, vec![vec![2, 0]]);
        let s = similarity(&Tensor::new(&[0f32, 1.0], &dev)?)?.to_vec1::<f32>()?;
        assert!((s[0] - 1.0).abs() < 1e-7 && (s[1] - (-1f32).exp()).abs() < 1e-7);
        Ok(())
    }
}
