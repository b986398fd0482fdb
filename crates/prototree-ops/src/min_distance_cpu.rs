//! A fused CPU kernel for the min-pooled prototype distance, with a sparse backward pass.
//!
//! Forward: one `(b·n, d) × (d, P)` product for the cross terms, then a single pass that
//! forms `|‖z‖² − 2 z·p + ‖p‖²|` and keeps the minimum and its position per image and
//! prototype. Backward: the gradient of a min-pool flows only into the winning patch, so
//! `∂L/∂p_j = Σ_b (g_bj / d_bj)(p_j − z*_bj)` and `∂L/∂z*_bj += (g_bj / d_bj)(z*_bj − p_j)`
//! cost `O(b·P·d)` instead of the dense `O(b·n·P·d)` product and `(b, n, P)` masks of the
//! generic autograd path. Values equal the generic path (`crate::distance`) up to float
//! rounding; the tests compare both.
//!
//! The forward pass runs in blocks of a few images, in parallel: each block's
//! `(rows, P)` product (computed by `gemm` straight from the input slices) stays in the
//! core's cache while the min pass reads it, so no `(b·n, P)` buffer is ever allocated.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp2, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::{fused_cpu_fwd, with_cpu_slice};
use crate::gemm::{gemm_into, MatView};
use crate::simd::{avx2_dispatch, axpy_diff, dot, dot_lanes};

/// The op: `(patches (b, n, d), prototypes (P, d, ..))` → minimum distances `(b, P)`; the
/// index of each nearest patch is kept in the op for the backward pass.
struct MinDistance {
    /// The epsilon under the square root (`sqrt(d² + eps)`).
    eps: f64,
    winners: Arc<OnceLock<Vec<u32>>>,
}

/// Rows (patches) of one block of the forward pass: the block's `(rows, P)` product stays
/// in the core's L2 cache while the min pass reads it (392 × 511 floats = 0.8 MB at the
/// default sizes), and is large enough that `gemm` packing the prototypes once per block
/// costs little (measured: 392 rows beat 192 in the forward / matmul ratio, 1.24 vs 1.33).
const BLOCK_ROWS: usize = 392;

/// Prototypes per block of the backward pass (their gradient rows stay in cache while
/// every image adds to them).
const PROTO_BLOCK: usize = 32;

/// The op's name in errors.
const OP: &str = "min-distance backward";

/// Forward pass on slices: for each image, the minimum distance to each prototype and the
/// index of the nearest patch, written as `out[(bi·P + j)·2 + {0, 1}]`.
fn min_distance_forward(
    z: &[f32],
    protos: &[f32],
    b: usize,
    n: usize,
    d: usize,
    p: usize,
    eps: f64,
) -> candle_core::Result<(Vec<f32>, Vec<u32>)> {
    let pp: Vec<f32> = protos
        .chunks_exact(d.max(1))
        .map(|r| dot(r, r))
        .take(p)
        .collect();
    let mut dist = vec![0f32; b * p];
    let mut winners = vec![0u32; b * p];
    if b == 0 || p == 0 {
        return Ok((dist, winners));
    }
    if n == 0 {
        // No patches: a min over an empty set.
        dist.fill(f32::INFINITY);
        return Ok((dist, winners));
    }
    if d == 0 {
        // Zero-length vectors: every squared distance is 0.
        dist.fill(eps.sqrt() as f32);
        return Ok((dist, winners));
    }
    let images_per_block = (BLOCK_ROWS / n).max(1);
    dist.par_chunks_mut(images_per_block * p)
        .zip(winners.par_chunks_mut(images_per_block * p))
        .zip(z.par_chunks(images_per_block * n * d))
        .try_for_each_init(
            || (Vec::new(), vec![f32::INFINITY; p]),
            |(cross, best), ((dist_block, arg_block), z_block)| {
                let rows = dist_block.len() / p * n;
                cross.resize(rows * p, 0.0);
                gemm_into(
                    cross,
                    (rows, p, d),
                    MatView::rows(z_block, d),
                    MatView::transposed(protos, d),
                    false,
                    false,
                )?;
                for ((dist_row, arg), (z_img, cross_img)) in dist_block
                    .chunks_exact_mut(p)
                    .zip(arg_block.chunks_exact_mut(p))
                    .zip(z_block.chunks_exact(n * d).zip(cross.chunks_exact(n * p)))
                {
                    min_pass(z_img, cross_img, &pp, Nearest { best, arg }, d);
                    for (o, &bj) in dist_row.iter_mut().zip(best.iter()) {
                        *o = (f64::from(bj) + eps).sqrt() as f32;
                    }
                }
                Ok::<(), candle_core::Error>(())
            },
        )?;
    Ok((dist, winners))
}

/// Per prototype of one image, the smallest squared distance (`best`) and the first patch
/// reaching it (`arg`), both written by the min pass.
struct Nearest<'a> {
    best: &'a mut [f32],
    arg: &'a mut [u32],
}

/// The min pass of one image: `best[j] = min_i |‖z_i‖² − 2 cross[i, j] + pp[j]|` over the
/// image's patches `i`, and `arg[j]` the first patch reaching it.
#[inline(always)]
fn min_pass_lanes(z_img: &[f32], cross_img: &[f32], pp: &[f32], out: Nearest<'_>, d: usize) {
    let Nearest { best, arg } = out;
    let p = pp.len();
    best.fill(f32::INFINITY);
    arg.fill(0);
    for (ni, (zr, c)) in z_img
        .chunks_exact(d.max(1))
        .zip(cross_img.chunks_exact(p.max(1)))
        .enumerate()
    {
        let zz = dot_lanes(zr, zr);
        let ni = ni as u32;
        for (((bj, aj), &cj), &pj) in best.iter_mut().zip(arg.iter_mut()).zip(c).zip(pp) {
            let v = (zz - 2.0 * cj + pj).abs();
            let better = v < *bj;
            *bj = if better { v } else { *bj };
            *aj = if better { ni } else { *aj };
        }
    }
}

avx2_dispatch! {
    /// [`min_pass_lanes`], with AVX2 where the CPU has it (same arithmetic either way).
    fn min_pass = min_pass_lanes(
        z_img: &[f32],
        cross_img: &[f32],
        pp: &[f32],
        out: Nearest<'_>,
        d: usize,
    );
}

/// `(P, d)` of a prototype tensor `(P, d, ..)` (trailing 1×1 axes allowed).
fn proto_dims(shape: &Shape) -> candle_core::Result<(usize, usize)> {
    let dims = shape.dims();
    if dims.len() < 2 {
        candle_core::bail!("prototypes must be (P, d) or (P, d, 1, 1), got {dims:?}");
    }
    Ok((dims[0], dims[1..].iter().product()))
}

impl CustomOp2 for MinDistance {
    fn name(&self) -> &'static str {
        "prototree-min-distance"
    }

    fused_cpu_fwd!(self, "min-distance op", |(z, l1), (protos, l2)| {
        let (b, n, d) = l1.shape().dims3()?;
        let (p, d2) = proto_dims(l2.shape())?;
        if d != d2 {
            candle_core::bail!("patch length {d} != prototype length {d2}");
        }
        let (dist, winners) = min_distance_forward(z, protos, b, n, d, p, self.eps)?;
        if self.winners.set(winners).is_err() {
            candle_core::bail!("min-distance op instance reused");
        }
        Ok((CpuStorage::F32(dist), Shape::from((b, p))))
    });

    fn bwd(
        &self,
        patches: &Tensor,
        prototypes: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, n, d) = patches.dims3()?;
        let (p, _) = proto_dims(prototypes.shape())?;
        let Some(winners) = self.winners.get() else {
            candle_core::bail!("min-distance backward before forward");
        };
        let (patches, prototypes) = (patches.contiguous()?, prototypes.contiguous()?);
        let (res, grad_res) = (res.contiguous()?, grad_res.contiguous()?);
        // coef_bj = g_bj / d_bj (the factor 2 of ∂d²/∂· cancels the 1/2 of ∂√·).
        let coef = with_cpu_slice(&res, OP, |res| {
            with_cpu_slice(&grad_res, OP, |g| {
                g.iter().zip(res).map(|(g, r)| g / r).collect::<Vec<f32>>()
            })
        })??;
        let (gz, gp) = with_cpu_slice(&patches, OP, |z| {
            with_cpu_slice(&prototypes, OP, |protos| {
                let mut gp = vec![0f32; p * d];
                // Blocks of prototypes, images in the outer loop: the block's gradient
                // rows and the current image's patches stay in cache (the sum over images
                // keeps its order).
                gp.par_chunks_mut(PROTO_BLOCK * d.max(1))
                    .enumerate()
                    .for_each(|(blk, g_block)| {
                        let j0 = blk * PROTO_BLOCK;
                        for bi in 0..b {
                            let z_img = &z[bi * n * d..(bi + 1) * n * d];
                            for (jj, gj) in g_block.chunks_exact_mut(d.max(1)).enumerate() {
                                let j = j0 + jj;
                                let c = coef[bi * p + j];
                                if c == 0.0 {
                                    continue;
                                }
                                let w = winners[bi * p + j] as usize;
                                let pj = &protos[j * d..(j + 1) * d];
                                axpy_diff(gj, c, pj, &z_img[w * d..(w + 1) * d]);
                            }
                        }
                    });
                let mut gz = vec![0f32; b * n * d];
                gz.par_chunks_mut((n * d).max(1))
                    .enumerate()
                    .for_each(|(bi, gb)| {
                        for j in 0..p {
                            let c = coef[bi * p + j];
                            if c == 0.0 {
                                continue;
                            }
                            let w = winners[bi * p + j] as usize;
                            let pj = &protos[j * d..(j + 1) * d];
                            let zs = &z[(bi * n + w) * d..][..d];
                            let gw = &mut gb[w * d..(w + 1) * d];
                            axpy_diff(gw, c, zs, pj);
                        }
                    });
                (gz, gp)
            })
        })??;
        let dev = patches.device();
        Ok((
            Some(Tensor::from_vec(gz, (b, n, d), dev)?),
            Some(Tensor::from_vec(gp, prototypes.shape(), dev)?),
        ))
    }
}

/// Minimum distance `sqrt(min d² + eps)` `(b, P)` and nearest-patch index `(b, P)` (u32)
/// with the fused CPU kernel. Inputs must be f32 on the CPU; `prototypes` is `(P, d)` or
/// `(P, d, 1, 1)` (the stored parameter itself, so its gradient needs no reshape).
pub fn min_distances_fused(
    patches: &Tensor,
    prototypes: &Tensor,
    eps: f64,
) -> candle_core::Result<(Tensor, Tensor)> {
    let op = MinDistance {
        eps,
        winners: Arc::default(),
    };
    let winners = op.winners.clone();
    let dist = patches
        .contiguous()?
        .apply_op2(&prototypes.contiguous()?, op)?;
    let Some(winners) = winners.get() else {
        candle_core::bail!("min-distance op did not run");
    };
    let (b, p) = dist.dims2()?;
    let arg = Tensor::from_slice(winners, (b, p), dist.device())?;
    Ok((dist, arg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::weighted_sum_grad;
    use candle_core::{Device, Var};

    /// The fused op against the generic path on patches `z` and prototypes `p` (`flat`:
    /// `p` as `(P, d)`): distances, winning patches, and the gradients (shaped as their
    /// variables) of the distances weighted by `w`.
    fn assert_matches_generic(z: &Var, p: &Var, flat: &Tensor, w: &Tensor) -> anyhow::Result<()> {
        let (fused, arg) =
            min_distances_fused(z.as_tensor(), p.as_tensor(), crate::distance::DISTANCE_EPS)?;
        let generic = crate::distance::min_distances_generic(z.as_tensor(), flat)?;
        let diff = (&fused - &generic)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "values differ by {diff}");
        let (_, generic_arg) = crate::distance::distance_maps(z.as_tensor(), flat)?;
        assert_eq!(arg.to_vec2::<u32>()?, generic_arg.to_vec2::<u32>()?);
        for v in [z, p] {
            let a = weighted_sum_grad(&fused, w, v)?;
            let b = weighted_sum_grad(&generic, w, v)?;
            assert_eq!(a.dims(), v.dims());
            let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-4, "gradients differ by {diff}");
        }
        Ok(())
    }

    #[test]
    fn matches_the_generic_path_in_values_and_gradients() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let z = Var::from_tensor(&Tensor::rand(0f32, 1.0, (3, 5, 4), &dev)?)?;
        let p = Var::from_tensor(&Tensor::rand(0f32, 1.0, (6, 4), &dev)?)?;
        let w = Tensor::rand(0f32, 1.0, (3, 6), &dev)?;
        assert_matches_generic(&z, &p, p.as_tensor(), &w)
    }

    #[test]
    fn many_blocks_odd_sizes_and_stored_prototype_shape() -> anyhow::Result<()> {
        // 9 images of 49 patches span several blocks; d = 37 leaves a dot-product tail.
        let dev = Device::Cpu;
        let z = Var::from_tensor(&Tensor::rand(0f32, 1.0, (9, 49, 37), &dev)?)?;
        let p = Var::from_tensor(&Tensor::rand(0f32, 1.0, (13, 37, 1, 1), &dev)?)?;
        let w = Tensor::rand(0f32, 1.0, (9, 13), &dev)?;
        let flat = p.as_tensor().reshape((13, 37))?;
        assert_matches_generic(&z, &p, &flat, &w)
    }
}
