//! A fused CPU kernel for the min-pooled prototype distance, with a sparse backward pass.
//!
//! Forward: one `(b·n, d) × (d, P)` product for the cross terms, then a single pass that
//! forms `|‖z‖² − 2 z·p + ‖p‖²|` and keeps the minimum and its position per image and
//! prototype. Backward: the gradient of a min-pool flows only into the winning patch, so
//! `∂L/∂p_j = Σ_b (g_bj / d_bj)(p_j − z*_bj)` and `∂L/∂z*_bj += (g_bj / d_bj)(z*_bj − p_j)`
//! cost `O(b·P·d)` instead of the dense `O(b·n·P·d)` product and `(b, n, P)` masks of the
//! generic autograd path. Values equal the generic path ([`crate::distance`]) up to float
//! rounding; the tests compare both.

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::distance::DISTANCE_EPS;

/// The op: `(patches (b, n, d), prototypes (P, d))` → `(b, P, 2)` holding the minimum
/// distance and, as f32, the index of the nearest patch.
struct MinDistance;

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("min-distance op needs contiguous inputs"),
    }
}

impl CustomOp2 for MinDistance {
    fn name(&self) -> &'static str {
        "prototree-min-distance"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, n, d) = l1.shape().dims3()?;
        let (p, d2) = l2.shape().dims2()?;
        if d != d2 {
            candle_core::bail!("patch length {d} != prototype length {d2}");
        }
        let z = contiguous(s1, l1)?;
        let protos = contiguous(s2, l2)?;
        let zt = Tensor::from_slice(z, (b * n, d), &Device::Cpu)?;
        let pt = Tensor::from_slice(protos, (p, d), &Device::Cpu)?;
        let cross = zt.matmul(&pt.t()?)?.flatten_all()?.to_vec1::<f32>()?;
        let zz: Vec<f32> = z.chunks(d).map(|r| r.iter().map(|v| v * v).sum()).collect();
        let pp: Vec<f32> = protos
            .chunks(d)
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        let mut out = vec![0f32; b * p * 2];
        out.par_chunks_mut(p * 2).enumerate().for_each(|(bi, row)| {
            let mut best = vec![f32::INFINITY; p];
            let mut arg = vec![0u32; p];
            for ni in 0..n {
                let r = bi * n + ni;
                let c = &cross[r * p..(r + 1) * p];
                for j in 0..p {
                    let v = (zz[r] - 2.0 * c[j] + pp[j]).abs();
                    if v < best[j] {
                        best[j] = v;
                        arg[j] = ni as u32;
                    }
                }
            }
            for j in 0..p {
                row[2 * j] = (f64::from(best[j]) + DISTANCE_EPS).sqrt() as f32;
                row[2 * j + 1] = arg[j] as f32;
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, p, 2))))
    }

    fn bwd(
        &self,
        patches: &Tensor,
        prototypes: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, n, d) = patches.dims3()?;
        let p = prototypes.dim(0)?;
        let z = patches.flatten_all()?.to_vec1::<f32>()?;
        let protos = prototypes.flatten_all()?.to_vec1::<f32>()?;
        let res = res.flatten_all()?.to_vec1::<f32>()?;
        let g = grad_res.flatten_all()?.to_vec1::<f32>()?;
        // coef_bj = g_bj / d_bj (the factor 2 of ∂d²/∂· cancels the 1/2 of ∂√·).
        let coef: Vec<f32> = (0..b * p).map(|i| g[2 * i] / res[2 * i]).collect();
        let winner = |bi: usize, j: usize| res[2 * (bi * p + j) + 1] as usize;
        let mut gp = vec![0f32; p * d];
        gp.par_chunks_mut(d).enumerate().for_each(|(j, gj)| {
            let pj = &protos[j * d..(j + 1) * d];
            for bi in 0..b {
                let c = coef[bi * p + j];
                if c == 0.0 {
                    continue;
                }
                let zs = &z[(bi * n + winner(bi, j)) * d..][..d];
                for k in 0..d {
                    gj[k] += c * (pj[k] - zs[k]);
                }
            }
        });
        let mut gz = vec![0f32; b * n * d];
        gz.par_chunks_mut(n * d).enumerate().for_each(|(bi, gb)| {
            for j in 0..p {
                let c = coef[bi * p + j];
                if c == 0.0 {
                    continue;
                }
                let w = winner(bi, j);
                let pj = &protos[j * d..(j + 1) * d];
                let zs = &z[(bi * n + w) * d..][..d];
                let gw = &mut gb[w * d..(w + 1) * d];
                for k in 0..d {
                    gw[k] += c * (zs[k] - pj[k]);
                }
            }
        });
        let dev = patches.device();
        Ok((
            Some(Tensor::from_vec(gz, (b, n, d), dev)?),
            Some(Tensor::from_vec(gp, (p, d), dev)?),
        ))
    }
}

/// Minimum distance `(b, P)` and nearest-patch index `(b, P)` (u32) with the fused CPU
/// kernel. Inputs must be f32 on the CPU.
pub fn min_distances_fused(
    patches: &Tensor,
    prototypes: &Tensor,
) -> candle_core::Result<(Tensor, Tensor)> {
    let out = patches
        .contiguous()?
        .apply_op2(&prototypes.contiguous()?, MinDistance)?;
    let dist = out.narrow(2, 0, 1)?.squeeze(2)?;
    let arg = out
        .narrow(2, 1, 1)?
        .squeeze(2)?
        .detach()
        .to_dtype(candle_core::DType::U32)?;
    Ok((dist, arg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    #[test]
    fn matches_the_generic_path_in_values_and_gradients() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let z = Var::from_tensor(&Tensor::rand(0f32, 1.0, (3, 5, 4), &dev)?)?;
        let p = Var::from_tensor(&Tensor::rand(0f32, 1.0, (6, 4), &dev)?)?;
        let w = Tensor::rand(0f32, 1.0, (3, 6), &dev)?;
        let (fused, arg) = min_distances_fused(z.as_tensor(), p.as_tensor())?;
        let generic = crate::distance::min_distances_generic(z.as_tensor(), p.as_tensor())?;
        let diff = (&fused - &generic)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "values differ by {diff}");
        let (_, generic_arg) = crate::distance::distance_maps(z.as_tensor(), p.as_tensor())?;
        assert_eq!(arg.to_vec2::<u32>()?, generic_arg.to_vec2::<u32>()?);
        let g1 = (fused * &w)?.sum_all()?.backward()?;
        let g2 = (generic * &w)?.sum_all()?.backward()?;
        for v in [&z, &p] {
            let a = g1.get(v.as_tensor()).unwrap();
            let b = g2.get(v.as_tensor()).unwrap();
            let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-4, "gradients differ by {diff}");
        }
        Ok(())
    }
}
