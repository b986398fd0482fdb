//! Fused channels-last im2col for the CPU, as a candle custom op with a col2im backward.
//!
//! Building the column matrix from `k²` strided slices costs `k²` single-threaded copies
//! and as many temporaries; this op writes it once, in parallel over output rows, and its
//! backward scatters the column gradient back in parallel over images.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Geometry of one convolution: kernel, stride, zero padding (top/left, bottom/right
/// implied by the output size), input and output sizes.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    kh: usize,
    kw: usize,
    stride: usize,
    pad_top: usize,
    pad_left: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    /// Input pixel read by output `(oy, ox)` at tap `(ky, kx)`, if inside the image.
    #[inline]
    fn source(
        &self,
        oy: usize,
        ox: usize,
        ky: usize,
        kx: usize,
        h: usize,
        w: usize,
    ) -> Option<(usize, usize)> {
        let iy = (oy * self.stride + ky).checked_sub(self.pad_top)?;
        let ix = (ox * self.stride + kx).checked_sub(self.pad_left)?;
        (iy < h && ix < w).then_some((iy, ix))
    }
}

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("im2col needs a contiguous input"),
    }
}

/// `(b, h, w, c)` → `(b·ho·wo, c·kh·kw)`, column `ci·kh·kw + ky·kw + kx`.
struct Im2Col(Geometry);

/// The backward of [`Im2Col`]: `(b·ho·wo, c·kh·kw)` → `(b, h, w, c)`.
struct Col2Im {
    g: Geometry,
    b: usize,
    h: usize,
    w: usize,
    c: usize,
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "prototree-im2col-nhwc"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, h, w, c) = l.shape().dims4()?;
        let x = contiguous(s, l)?;
        let g = self.0;
        let kk = g.kh * g.kw;
        let cols = c * kk;
        let rows = b * g.ho * g.wo;
        let mut out = vec![0f32; rows * cols];
        out.par_chunks_mut(cols).enumerate().for_each(|(r, row)| {
            let bi = r / (g.ho * g.wo);
            let oy = (r / g.wo) % g.ho;
            let ox = r % g.wo;
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    if let Some((iy, ix)) = g.source(oy, ox, ky, kx, h, w) {
                        let src = &x[((bi * h + iy) * w + ix) * c..][..c];
                        let tap = ky * g.kw + kx;
                        for (ci, v) in src.iter().enumerate() {
                            row[ci * kk + tap] = *v;
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((rows, cols))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (b, h, w, c) = arg.dims4()?;
        let grad = grad_res.contiguous()?.apply_op1_no_bwd(&Col2Im {
            g: self.0,
            b,
            h,
            w,
            c,
        })?;
        Ok(Some(grad))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "prototree-col2im-nhwc"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let gcols = contiguous(s, l)?;
        let Col2Im { g, b, h, w, c } = *self;
        let kk = g.kh * g.kw;
        let cols = c * kk;
        let mut out = vec![0f32; b * h * w * c];
        out.par_chunks_mut(h * w * c)
            .enumerate()
            .for_each(|(bi, img)| {
                for oy in 0..g.ho {
                    for ox in 0..g.wo {
                        let row = &gcols[((bi * g.ho + oy) * g.wo + ox) * cols..][..cols];
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                if let Some((iy, ix)) = g.source(oy, ox, ky, kx, h, w) {
                                    let dst = &mut img[(iy * w + ix) * c..][..c];
                                    let tap = ky * g.kw + kx;
                                    for (ci, d) in dst.iter_mut().enumerate() {
                                        *d += row[ci * kk + tap];
                                    }
                                }
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, h, w, c))))
    }
}

/// The im2col matrix `(b·ho·wo, c·kh·kw)` of a contiguous f32 CPU input `(b, h, w, c)`
/// with symmetric zero `padding`, differentiable.
pub fn im2col_nhwc(
    x: &Tensor,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: usize,
    ho: usize,
    wo: usize,
) -> candle_core::Result<Tensor> {
    let g = Geometry {
        kh,
        kw,
        stride: stride.max(1),
        pad_top: padding,
        pad_left: padding,
        ho,
        wo,
    };
    x.contiguous()?.apply_op1(Im2Col(g))
}
