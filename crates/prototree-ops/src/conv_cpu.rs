//! Fused channels-last convolution for the CPU, as a candle custom op with its own backward.
//!
//! The forward builds the im2col matrix a block of output rows at a time, in a buffer that
//! stays in cache, and multiplies each block at once (the `gemm` crate, as candle's own
//! matmul); the column matrix of the whole batch is never materialised. The backward
//! regathers the same blocks to accumulate the weight gradient block by block and scatters
//! each block's column gradient straight into the input gradient. Only the input and the
//! weights are kept for the backward pass.
//!
//! Columns are ordered tap-major (`(ky·kw + kx)·c + ci`), so every tap copies a contiguous
//! run of `c` channels; the weights are reordered from PyTorch's `(o, c, kh, kw)` (small).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::{assume_init, fused_cpu_fwd, uninit_vec, zeroed};
use crate::gemm::{gemm_into, MatView};
use crate::packed_grads::{image_tasks, packed_buffer, packed_bwd, packed_output, PackedBackward};
use crate::reduction::{reduction_tasks, sum_in_order};
use crate::window::Window;

/// Fewest output rows per block: enough to amortise the packing of the weight matrix
/// inside the matrix product, few enough to keep the block's columns near the core.
const MIN_BLOCK_ROWS: usize = 256;

/// Most output rows per block.
const MAX_BLOCK_ROWS: usize = 2048;

/// Rows per block for `k × o` weights: large weights (deep layers) get longer blocks, so
/// that packing the weights and reading and writing the weight-gradient accumulator stay
/// small next to the block's arithmetic; at most `limit` (≥ 1).
fn block_rows(k: usize, o: usize, limit: usize) -> usize {
    ((k * o) / 1024)
        .clamp(MIN_BLOCK_ROWS, MAX_BLOCK_ROWS)
        .min(limit)
        .max(1)
}

/// Geometry of one convolution: its window and `o` output channels.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    win: Window,
    o: usize,
}

impl Geometry {
    /// Length of one column row, `kh·kw·c`.
    fn k(&self) -> usize {
        self.win.kh * self.win.kw * self.win.c
    }

    /// Writes the column rows of output rows `r0..r0 + n` into `buf` (`n × k`).
    fn gather(&self, x: &[f32], r0: usize, n: usize, buf: &mut [f32]) {
        let (k, c) = (self.k(), self.win.c);
        for (i, row) in buf[..n * k].chunks_exact_mut(k).enumerate() {
            let (bi, oy, ox) = self.win.split(r0 + i);
            for ky in 0..self.win.kh {
                for kx in 0..self.win.kw {
                    let dst = &mut row[(ky * self.win.kw + kx) * c..][..c];
                    match self.win.source(oy, ox, ky, kx) {
                        Some((iy, ix)) => dst.copy_from_slice(
                            &x[((bi * self.win.h + iy) * self.win.w + ix) * c..][..c],
                        ),
                        None => dst.fill(0.0),
                    }
                }
            }
        }
    }

    /// Adds the column-gradient rows `gcols` (`n × k`) of output rows `r0..r0 + n` into
    /// `dx`, the input gradient of images `img0..`.
    fn scatter(&self, gcols: &[f32], r0: usize, n: usize, dx: &mut [f32], img0: usize) {
        let (k, c) = (self.k(), self.win.c);
        for (i, row) in gcols[..n * k].chunks_exact(k).enumerate() {
            let (bi, oy, ox) = self.win.split(r0 + i);
            for ky in 0..self.win.kh {
                for kx in 0..self.win.kw {
                    if let Some((iy, ix)) = self.win.source(oy, ox, ky, kx) {
                        let src = &row[(ky * self.win.kw + kx) * c..][..c];
                        let dst =
                            &mut dx[(((bi - img0) * self.win.h + iy) * self.win.w + ix) * c..][..c];
                        for (d, s) in dst.iter_mut().zip(src) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }

    /// PyTorch weights `(o, c, kh, kw)` → the `(k, o)` matrix of tap-major columns.
    fn weight_matrix(&self, w: &[f32]) -> Vec<f32> {
        let (o, c, kk) = (self.o, self.win.c, self.win.kh * self.win.kw);
        let mut m = vec![0f32; kk * c * o];
        // Output rows `(tap, ci)` are written in order; each (oc, ci) reads kk neighbours.
        for ci in 0..c {
            for oc in 0..o {
                let src = &w[(oc * c + ci) * kk..][..kk];
                for (tap, v) in src.iter().enumerate() {
                    m[(tap * c + ci) * o + oc] = *v;
                }
            }
        }
        m
    }

    /// The `(k, o)` tap-major weight gradient → PyTorch's `(o, c, kh, kw)`, into `out`.
    fn weight_grad_to_torch(&self, m: &[f32], out: &mut [f32]) {
        let (o, c, kk) = (self.o, self.win.c, self.win.kh * self.win.kw);
        for (oc, dst) in out.chunks_exact_mut(c * kk).enumerate().take(o) {
            for ci in 0..c {
                for tap in 0..kk {
                    dst[ci * kk + tap] = m[(tap * c + ci) * o + oc];
                }
            }
        }
    }
}

/// Forward: `(x (b, h, w, c), weight (o, c, kh, kw))` → `(b, ho, wo, o)`.
struct ConvNhwc(Geometry);

impl CustomOp2 for ConvNhwc {
    fn name(&self) -> &'static str {
        "prototree-conv2d-nhwc"
    }

    fused_cpu_fwd!(self, "conv2d_nhwc", |(x, _l1), (weight, _l2)| {
        let g = self.0;
        let wm = g.weight_matrix(weight);
        let (k, o, rows) = (g.k(), g.o, g.win.rows());
        let mut y = uninit_vec(rows * o);
        let pointwise = g.win.pointwise();
        let threads = rayon::current_num_threads().max(1);
        let br = block_rows(k, o, rows.div_ceil(threads));
        y.par_chunks_mut((br * o).max(1))
            .enumerate()
            .try_for_each_init(
                || {
                    if pointwise {
                        Vec::new()
                    } else {
                        vec![0f32; br * k]
                    }
                },
                |buf, (blk, yb)| {
                    let r0 = blk * br;
                    let n = yb.len() / o;
                    let lhs = if pointwise {
                        &x[r0 * k..]
                    } else {
                        g.gather(x, r0, n, buf);
                        &buf[..]
                    };
                    // Zero the block while it is in cache: the product then only writes it.
                    let yb = zeroed(yb);
                    gemm_into(
                        yb,
                        (n, o, k),
                        MatView::rows(lhs, k),
                        MatView::rows(&wm, o),
                        false,
                        false,
                    )
                },
            )?;
        // SAFETY: the blocks cover y and each was written in full.
        let y = unsafe { assume_init(y) };
        Ok((
            CpuStorage::F32(y),
            Shape::from((g.win.b, g.win.ho, g.win.wo, o)),
        ))
    });

    packed_bwd!(self);
}

/// Backward: `(x, weight, dy)` → `[dx (b·h·w·c, if wanted) | dw (o·c·kh·kw, if wanted)]`.
impl CustomOp3 for PackedBackward<Geometry> {
    fn name(&self) -> &'static str {
        "prototree-conv2d-nhwc-backward"
    }

    fused_cpu_fwd!(self, "conv2d_nhwc", |(x, _l1), (w, _l2), (dy, _l3)| {
        let g = self.g;
        let wm = g.weight_matrix(w);
        let (k, o) = (g.k(), g.o);
        let (img_in, img_out) = (g.win.h * g.win.w * g.win.c, g.win.ho * g.win.wo);
        let nx = g.win.b * img_in;
        let mut out = packed_buffer((self.dx, nx), (self.dw, w.len()));
        let (dx_all, dw_out) = out.split_at_mut(if self.dx { nx } else { 0 });

        // Whole images per task (one task per thread, or a fixed number for deterministic
        // reductions): each task accumulates its own weight gradient.
        let tasks = reduction_tasks(g.win.b);
        let per = g.win.b.div_ceil(tasks).max(1);
        let parts = image_tasks(self.dx.then_some(dx_all), g.win.b, img_in, per);
        let pointwise = g.win.pointwise();
        let br = block_rows(k, o, per * img_out);
        let (want_dx, want_dw) = (self.dx, self.dw);
        let accs: Vec<Vec<f32>> = parts
            .into_par_iter()
            .map(|(img0, mut dx)| {
                let img1 = (img0 + per).min(g.win.b);
                let (r_start, r_end) = (img0 * img_out, img1 * img_out);
                let mut acc = if want_dw {
                    vec![0f32; k * o]
                } else {
                    Vec::new()
                };
                let mut cols = if pointwise || !want_dw {
                    Vec::new()
                } else {
                    vec![0f32; br * k]
                };
                let mut gcols = if pointwise || !want_dx {
                    Vec::new()
                } else {
                    vec![0f32; br * k]
                };
                let mut r0 = r_start;
                while r0 < r_end {
                    let n = br.min(r_end - r0);
                    let dyb = MatView::rows(&dy[r0 * o..], o);
                    if want_dw {
                        let lhs = if pointwise {
                            &x[r0 * k..]
                        } else {
                            g.gather(x, r0, n, &mut cols);
                            &cols[..]
                        };
                        // acc (k × o) += lhsᵀ (k × n) · dy's block (n × o).
                        gemm_into(
                            &mut acc,
                            (k, o, n),
                            MatView::transposed(lhs, k),
                            dyb,
                            true,
                            false,
                        )?;
                    }
                    if let Some(dx) = dx.as_deref_mut() {
                        let dst = if pointwise {
                            &mut dx[(r0 - r_start) * k..]
                        } else {
                            &mut gcols[..]
                        };
                        // dst (n × k) = dy's block (n × o) · wmᵀ (o × k).
                        gemm_into(
                            dst,
                            (n, k, o),
                            dyb,
                            MatView::transposed(&wm, o),
                            false,
                            false,
                        )?;
                        if !pointwise {
                            g.scatter(&gcols, r0, n, dx, img0);
                        }
                    }
                    r0 += n;
                }
                Ok(acc)
            })
            .collect::<candle_core::Result<_>>()?;
        if want_dw {
            g.weight_grad_to_torch(&sum_in_order(&accs, k * o), dw_out);
        }
        Ok(packed_output(out))
    });
}

/// Channels-last 2-D convolution (no bias) of an f32 CPU input over the window `win`,
/// fused and differentiable.
///
/// # Shapes
/// - `x`: `(b, h, w, c)`, `weight`: `(o, c, kh, kw)` → `(b, ho, wo, o)`
pub(crate) fn conv2d_nhwc_fused(
    x: &Tensor,
    weight: &Tensor,
    win: Window,
) -> candle_core::Result<Tensor> {
    let o = weight.dim(0)?;
    if weight.elem_count() != o * win.c * win.kh * win.kw {
        candle_core::bail!(
            "conv2d_nhwc: weight {:?} does not fit the window",
            weight.dims()
        );
    }
    let g = Geometry { win, o };
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, ConvNhwc(g))
}
