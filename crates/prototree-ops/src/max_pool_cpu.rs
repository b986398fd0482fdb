//! Channels-last max-pooling for the CPU, as a candle custom op whose backward routes
//! each output's gradient to the first maximal input of its window (PyTorch's choice),
//! without keeping indices: it rescans the window against the saved output.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::fused_cpu_fwd;
use crate::simd::avx2_dispatch;
use crate::window::Window;

/// The pooling window (padding reads as `−∞`).
type Pool = Window;

/// `(b, h, w, c)` → `(b, ho, wo, c)`.
struct MaxPool(Pool);

/// `(x, y, dy)` → `dx`.
struct MaxPoolBackward(Pool);

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "prototree-max-pool-nhwc"
    }

    fused_cpu_fwd!(self, "max_pool_nhwc", |(x, l)| {
        let p = self.0;
        let b = l.shape().dims4()?.0;
        let c = p.c;
        let mut y = vec![f32::NEG_INFINITY; b * p.ho * p.wo * c];
        y.par_chunks_mut((p.ho * p.wo * c).max(1))
            .zip(x.par_chunks((p.h * p.w * c).max(1)))
            .for_each(|(yi, xi)| pool_image(&p, xi, yi));
        Ok((CpuStorage::F32(y), Shape::from((b, p.ho, p.wo, c))))
    });

    fn bwd(&self, x: &Tensor, res: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op3_no_bwd(
            res,
            &dy.contiguous()?,
            &MaxPoolBackward(self.0),
        )?))
    }
}

impl CustomOp3 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "prototree-max-pool-nhwc-backward"
    }

    fused_cpu_fwd!(self, "max_pool_nhwc", |(x, l1), (y, _l2), (dy, _l3)| {
        let p = self.0;
        let b = l1.shape().dims4()?.0;
        let c = p.c;
        let (img_in, img_out) = ((p.h * p.w * c).max(1), (p.ho * p.wo * c).max(1));
        let mut dx = vec![0f32; b * p.h * p.w * c];
        dx.par_chunks_mut(img_in)
            .zip(x.par_chunks(img_in))
            .zip(y.par_chunks(img_out).zip(dy.par_chunks(img_out)))
            .for_each(|((dxi, xi), (yi, gi))| unpool_image(&p, xi, yi, gi, dxi));
        Ok((CpuStorage::F32(dx), Shape::from((b, p.h, p.w, c))))
    });
}

/// The pooled image `yi` (filled with `−∞`) of the image `xi`: each output channel the
/// largest input of its window, NaN winning as in PyTorch. Written as a select rather
/// than a conditional store, so it vectorises over the channels.
#[inline(always)]
fn pool_image_portable(p: &Pool, xi: &[f32], yi: &mut [f32]) {
    let c = p.c;
    for oy in 0..p.ho {
        let (y0, y1) = p.span_rows(oy);
        for ox in 0..p.wo {
            let (x0, x1) = p.span_cols(ox);
            let dst = &mut yi[(oy * p.wo + ox) * c..][..c];
            for iy in y0..y1 {
                for ix in x0..x1 {
                    let src = &xi[(iy * p.w + ix) * c..][..c];
                    for (d, &v) in dst.iter_mut().zip(src) {
                        // `>` keeps the first maximum; `v != v` is NaN.
                        #[allow(clippy::eq_op)]
                        let wins = v > *d || v != v;
                        *d = if wins { v } else { *d };
                    }
                }
            }
        }
    }
}

/// The input gradient `dxi` (zero on entry) of one image: each output's gradient goes to
/// the first input of its window equal to the output (NaN matching NaN), scanned in
/// window order. `left` holds, per channel, the gradient not yet handed out, so the scan
/// is branch-free and vectorises over the channels.
#[inline(always)]
fn unpool_image_portable(p: &Pool, xi: &[f32], yi: &[f32], gi: &[f32], dxi: &mut [f32]) {
    let c = p.c;
    let mut left = vec![0f32; c];
    for oy in 0..p.ho {
        let (y0, y1) = p.span_rows(oy);
        for ox in 0..p.wo {
            let (x0, x1) = p.span_cols(ox);
            let o = (oy * p.wo + ox) * c;
            let ym = &yi[o..][..c];
            left.copy_from_slice(&gi[o..][..c]);
            for iy in y0..y1 {
                for ix in x0..x1 {
                    let at = (iy * p.w + ix) * c;
                    let src = &xi[at..][..c];
                    let dst = &mut dxi[at..][..c];
                    for (((d, &v), &m), g) in dst.iter_mut().zip(src).zip(ym).zip(left.iter_mut()) {
                        #[allow(clippy::eq_op)]
                        let hit = v == m || (v != v && m != m);
                        *d += if hit { *g } else { 0.0 };
                        *g = if hit { 0.0 } else { *g };
                    }
                }
            }
        }
    }
}

avx2_dispatch! {
    /// [`pool_image_portable`], with AVX2 where the CPU has it.
    fn pool_image = pool_image_portable(p: &Pool, xi: &[f32], yi: &mut [f32]);
}

avx2_dispatch! {
    /// [`unpool_image_portable`], with AVX2 where the CPU has it.
    fn unpool_image = unpool_image_portable(
        p: &Pool, xi: &[f32], yi: &[f32], gi: &[f32], dxi: &mut [f32],
    );
}

/// `k × k` max-pooling with `stride` and `padding` (padded cells never win) of a
/// contiguous f32 CPU input, differentiable.
///
/// # Shapes
/// - `x`: `(b, h, w, c)` → `(b, ho, wo, c)`
pub(crate) fn max_pool_nhwc_fused(
    x: &Tensor,
    k: usize,
    stride: usize,
    padding: usize,
    out: (usize, usize),
) -> candle_core::Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    let p = Window::new((b, h, w, c), (k, k), stride, (padding, padding), out);
    x.contiguous()?.apply_op1(MaxPool(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Against the generic tensor-op path (zero padding: positive inputs, no ties), and
    /// PyTorch's first-maximum rule on ties.
    #[test]
    fn matches_generic_path_and_routes_ties_to_first() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        for (k, s, p, n) in [(3, 2, 1, 9), (3, 2, 1, 8), (2, 2, 0, 7), (3, 1, 1, 5)] {
            let x = Var::rand(0.1f32, 1.0, (2, n, n, 3), &dev)?;
            let (ho, wo) = (
                crate::window::conv_out_size(n, k, s, p),
                crate::window::conv_out_size(n, k, s, p),
            );
            let ours = max_pool_nhwc_fused(x.as_tensor(), k, s, p, (ho, wo))?;
            // The generic path: zero-padded shifted copies and `maximum`.
            let xp = x
                .as_tensor()
                .pad_with_zeros(1, p, p)?
                .pad_with_zeros(2, p, p)?;
            let mut theirs: Option<Tensor> = None;
            for ky in 0..k {
                for kx in 0..k {
                    let mut taps = Vec::new();
                    for oy in 0..ho {
                        let row = xp.narrow(1, oy * s + ky, 1)?;
                        let cols: Vec<Tensor> = (0..wo)
                            .map(|ox| row.narrow(2, ox * s + kx, 1))
                            .collect::<candle_core::Result<_>>()?;
                        taps.push(Tensor::cat(&cols, 2)?);
                    }
                    let tap = Tensor::cat(&taps, 1)?;
                    theirs = Some(match theirs {
                        Some(m) => m.maximum(&tap)?,
                        None => tap,
                    });
                }
            }
            let theirs = theirs.unwrap();
            let up = Tensor::randn(0f32, 1.0, ours.shape(), &dev)?;
            assert_eq!(
                (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?,
                0.0
            );
            let g1 = (&ours * &up)?.sum_all()?.backward()?;
            let g2 = (&theirs * &up)?.sum_all()?.backward()?;
            let (a, b) = (
                g1.get(x.as_tensor()).unwrap(),
                g2.get(x.as_tensor()).unwrap(),
            );
            let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-6, "k {k} s {s} p {p} n {n}: {d}");
        }
        // All-equal window: the whole gradient goes to the first cell.
        let x = Var::from_tensor(&Tensor::ones((1, 2, 2, 1), DType::F32, &dev)?)?;
        let y = max_pool_nhwc_fused(x.as_tensor(), 2, 2, 0, (1, 1))?;
        let g = y.sum_all()?.backward()?;
        let gx = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(gx, vec![1.0, 0.0, 0.0, 0.0]);
        Ok(())
    }
}
