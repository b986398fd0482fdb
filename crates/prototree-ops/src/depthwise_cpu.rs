//! Fused channels-last depthwise convolution for the CPU, as a candle custom op with its
//! own backward.
//!
//! A depthwise convolution has one `kh × kw` filter per channel, so there is no matrix
//! product to speak of: each output pixel is `kh·kw` channel-wise multiply-adds of input
//! pixels. Channels-last makes every one of those a contiguous run of `c` floats, which
//! the compiler vectorises. Zero padding (TensorFlow's asymmetric "SAME" included) is
//! applied by skipping taps that fall outside the input, so no padded copy is made. The
//! backward scatters the output gradient back through the same taps (whole images per
//! task, so tasks never write the same input pixel) and accumulates the weight gradient
//! per task. Only the input and the weights are kept for the backward pass.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::fused_cpu_fwd;
use crate::packed_grads::{image_tasks, packed_buffer, packed_bwd, packed_output, PackedBackward};
use crate::reduction::{reduction_tasks, sum_in_order};
use crate::window::Window;

/// Geometry of one depthwise convolution: its window (the weights' taps per channel).
type Geometry = Window;

/// The depthwise weights as taps.
trait Taps {
    fn taps(&self, w: &[f32]) -> Vec<f32>;
}

impl Taps for Window {
    /// The weights `(c, 1, kh, kw)` as `kh·kw` rows of `c` (one row per tap).
    fn taps(&self, w: &[f32]) -> Vec<f32> {
        let (c, t) = (self.c, self.kh * self.kw);
        let mut taps = vec![0f32; t * c];
        for ci in 0..c {
            for ti in 0..t {
                taps[ti * c + ci] = w[ci * t + ti];
            }
        }
        taps
    }
}

/// `(x (b, h, w, c), weight (c, 1, kh, kw))` → `(b, ho, wo, c)`.
struct DepthwiseNhwc(Geometry);

impl CustomOp2 for DepthwiseNhwc {
    fn name(&self) -> &'static str {
        "prototree-depthwise-conv2d-nhwc"
    }

    fused_cpu_fwd!(self, "depthwise_conv2d_nhwc", |(x, _l1), (weight, _l2)| {
        let g = self.0;
        let taps = g.taps(weight);
        let c = g.c;
        let row_out = g.wo * c;
        let mut y = vec![0f32; g.b * g.ho * row_out];
        y.par_chunks_mut(row_out.max(1))
            .enumerate()
            .for_each(|(r, yr)| {
                let (bi, oy) = (r / g.ho, r % g.ho);
                for ky in 0..g.kh {
                    let Some(iy) = g.source_row(oy, ky) else {
                        continue;
                    };
                    let xrow = &x[(bi * g.h + iy) * g.w * c..][..g.w * c];
                    for kx in 0..g.kw {
                        let wt = &taps[(ky * g.kw + kx) * c..][..c];
                        let (cols, ix0) = g.valid_columns(kx);
                        for (j, ox) in cols.enumerate() {
                            let ix = ix0 + j * g.stride;
                            let src = &xrow[ix * c..][..c];
                            let dst = &mut yr[ox * c..][..c];
                            for ((d, s), t) in dst.iter_mut().zip(src).zip(wt) {
                                *d += s * t;
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.ho, g.wo, c))))
    });

    packed_bwd!(self);
}

/// `(x, weight, dy)` → `[dx (b·h·w·c, if asked) | dweight (c·kh·kw, if asked)]`.
impl CustomOp3 for PackedBackward<Geometry> {
    fn name(&self) -> &'static str {
        "prototree-depthwise-conv2d-nhwc-backward"
    }

    fused_cpu_fwd!(
        self,
        "depthwise_conv2d_nhwc",
        |(x, _l1), (w, _l2), (dy, _l3)| {
            let g = self.g;
            let taps = g.taps(w);
            let c = g.c;
            let t = g.kh * g.kw;
            let (img_in, img_out) = (g.h * g.w * c, g.ho * g.wo * c);
            let (want_dx, want_dw) = (self.dx, self.dw);
            let nx = g.b * img_in;
            let mut out = packed_buffer((want_dx, nx), (want_dw, w.len()));
            let (dx_all, dw_out) = out.split_at_mut(if want_dx { nx } else { 0 });

            // Whole images per task (one task per thread, or a fixed number for
            // deterministic reductions): a task accumulates its own (tap-major) weight
            // gradient; the tasks' sums are added in order.
            let per = g.b.div_ceil(reduction_tasks(g.b)).max(1);
            let parts = image_tasks(want_dx.then_some(dx_all), g.b, img_in, per);
            let accs: Vec<Vec<f32>> = parts
                .into_par_iter()
                .map(|(img0, mut dx_part)| {
                    let mut acc = vec![0f32; if want_dw { t * c } else { 0 }];
                    for bi in img0..(img0 + per).min(g.b) {
                        let mut dx = dx_part
                            .as_deref_mut()
                            .map(|d| &mut d[(bi - img0) * img_in..][..img_in]);
                        let ximg = &x[bi * img_in..][..img_in];
                        let dyimg = &dy[bi * img_out..][..img_out];
                        for oy in 0..g.ho {
                            let dyrow = &dyimg[oy * g.wo * c..][..g.wo * c];
                            for ky in 0..g.kh {
                                let Some(iy) = g.source_row(oy, ky) else {
                                    continue;
                                };
                                let base = iy * g.w * c;
                                for kx in 0..g.kw {
                                    let ti = ky * g.kw + kx;
                                    let (cols, ix0) = g.valid_columns(kx);
                                    if want_dw {
                                        let a = &mut acc[ti * c..][..c];
                                        for (j, ox) in cols.clone().enumerate() {
                                            let src = &ximg[base + (ix0 + j * g.stride) * c..][..c];
                                            let gy = &dyrow[ox * c..][..c];
                                            for ((a, s), d) in a.iter_mut().zip(src).zip(gy) {
                                                *a += s * d;
                                            }
                                        }
                                    }
                                    if let Some(dx) = dx.as_deref_mut() {
                                        let wt = &taps[ti * c..][..c];
                                        for (j, ox) in cols.enumerate() {
                                            let dst =
                                                &mut dx[base + (ix0 + j * g.stride) * c..][..c];
                                            let gy = &dyrow[ox * c..][..c];
                                            for ((d, gv), wv) in dst.iter_mut().zip(gy).zip(wt) {
                                                *d += gv * wv;
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    acc
                })
                .collect();
            let dw_tap_major = sum_in_order(&accs, if want_dw { t * c } else { 0 });
            if want_dw {
                // Tap-major (t, c) back to PyTorch's (c, 1, kh, kw).
                for ci in 0..c {
                    for ti in 0..t {
                        dw_out[ci * t + ti] = dw_tap_major[ti * c + ci];
                    }
                }
            }
            Ok(packed_output(out))
        }
    );
}

/// Channels-last depthwise 2-D convolution (no bias) of an f32 CPU input over the window
/// `g`, fused and differentiable.
///
/// # Shapes
/// - `x`: `(b, h, w, c)`, `weight`: `(c, 1, kh, kw)` → `(b, ho, wo, c)`
pub(crate) fn depthwise_conv2d_nhwc_fused(
    x: &Tensor,
    weight: &Tensor,
    g: Geometry,
) -> candle_core::Result<Tensor> {
    if weight.elem_count() != g.c * g.kh * g.kw {
        candle_core::bail!(
            "depthwise_conv2d_nhwc: weight {:?} does not fit an input of {} channels",
            weight.dims(),
            g.c
        );
    }
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, DepthwiseNhwc(g))
}
