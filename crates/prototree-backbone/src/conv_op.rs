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

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

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

/// A vector of `n` elements left uninitialised, to be written in full before
/// [`assume_init`].
pub(crate) fn uninit_vec(n: usize) -> Vec<std::mem::MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: MaybeUninit needs no initialisation; the capacity is n.
    unsafe { v.set_len(n) };
    v
}

/// The vector of [`uninit_vec`], every element of which has been written.
///
/// # Safety
/// Every element of `v` must have been initialised.
pub(crate) unsafe fn assume_init(v: Vec<std::mem::MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    // SAFETY: same allocation, layout and length; MaybeUninit<f32> has f32's layout and the
    // caller guarantees every element is initialised.
    unsafe { Vec::from_raw_parts(ptr.cast::<f32>(), len, cap) }
}

/// Geometry of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    b: usize,
    h: usize,
    w: usize,
    c: usize,
    o: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad_top: usize,
    pad_left: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    /// Length of one column row, `kh·kw·c`.
    fn k(&self) -> usize {
        self.kh * self.kw * self.c
    }

    /// Output rows, `b·ho·wo`.
    fn rows(&self) -> usize {
        self.b * self.ho * self.wo
    }

    /// A 1×1, stride-1, unpadded convolution: the input rows are the columns.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.ho == self.h && self.wo == self.w
    }

    /// Input pixel `(iy, ix)` read by output `(oy, ox)` at tap `(ky, kx)`, if inside.
    #[inline]
    fn source(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let iy = (oy * self.stride + ky).checked_sub(self.pad_top)?;
        let ix = (ox * self.stride + kx).checked_sub(self.pad_left)?;
        (iy < self.h && ix < self.w).then_some((iy, ix))
    }

    /// Image, output row and output column of output row `r`.
    #[inline]
    fn split(&self, r: usize) -> (usize, usize, usize) {
        (
            r / (self.ho * self.wo),
            (r / self.wo) % self.ho,
            r % self.wo,
        )
    }

    /// Writes the column rows of output rows `r0..r0 + n` into `buf` (`n × k`).
    fn gather(&self, x: &[f32], r0: usize, n: usize, buf: &mut [f32]) {
        let (k, c) = (self.k(), self.c);
        for (i, row) in buf[..n * k].chunks_exact_mut(k).enumerate() {
            let (bi, oy, ox) = self.split(r0 + i);
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let dst = &mut row[(ky * self.kw + kx) * c..][..c];
                    match self.source(oy, ox, ky, kx) {
                        Some((iy, ix)) => {
                            dst.copy_from_slice(&x[((bi * self.h + iy) * self.w + ix) * c..][..c])
                        }
                        None => dst.fill(0.0),
                    }
                }
            }
        }
    }

    /// Adds the column-gradient rows `gcols` (`n × k`) of output rows `r0..r0 + n` into
    /// `dx`, the input gradient of images `img0..`.
    fn scatter(&self, gcols: &[f32], r0: usize, n: usize, dx: &mut [f32], img0: usize) {
        let (k, c) = (self.k(), self.c);
        for (i, row) in gcols[..n * k].chunks_exact(k).enumerate() {
            let (bi, oy, ox) = self.split(r0 + i);
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    if let Some((iy, ix)) = self.source(oy, ox, ky, kx) {
                        let src = &row[(ky * self.kw + kx) * c..][..c];
                        let dst = &mut dx[(((bi - img0) * self.h + iy) * self.w + ix) * c..][..c];
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
        let (o, c, kk) = (self.o, self.c, self.kh * self.kw);
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
        let (o, c, kk) = (self.o, self.c, self.kh * self.kw);
        for (oc, dst) in out.chunks_exact_mut(c * kk).enumerate().take(o) {
            for ci in 0..c {
                for tap in 0..kk {
                    dst[ci * kk + tap] = m[(tap * c + ci) * o + oc];
                }
            }
        }
    }
}

/// Row-major `m × n` destination and operands for [`matmul`]: `(pointer, row stride,
/// column stride)`.
type Operand = (*const f32, isize, isize);

/// `dst (m × n, row-major) = [dst +] lhs (m × k) · rhs (k × n)`, single-threaded.
///
/// # Safety
/// `dst` must be valid for `m × n` row-major writes (and reads if `accumulate`), and the
/// operands valid for reads of `m × k` and `k × n` elements at their strides.
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    accumulate: bool,
    lhs: Operand,
    rhs: Operand,
) {
    // SAFETY: forwarded from the caller; gemm reads and writes only inside these bounds.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            lhs.0,
            lhs.2,
            lhs.1,
            rhs.0,
            rhs.2,
            rhs.1,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    crate::cpu_slice::contiguous_f32(s, l, &format!("conv2d_nhwc ({what})"))
}

/// Forward: `(x (b, h, w, c), weight (o, c, kh, kw))` → `(b, ho, wo, o)`.
struct ConvNhwc(Geometry);

/// Backward: `(x, weight, dy)` → `[dx (b·h·w·c, if wanted) | dw (o·c·kh·kw, if wanted)]`.
struct ConvNhwcBackward {
    g: Geometry,
    dx: bool,
    dw: bool,
}

impl CustomOp2 for ConvNhwc {
    fn name(&self) -> &'static str {
        "prototree-conv2d-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = contiguous(s1, l1, "input")?;
        let wm = g.weight_matrix(contiguous(s2, l2, "weight")?);
        let (k, o, rows) = (g.k(), g.o, g.rows());
        let mut y = uninit_vec(rows * o);
        let pointwise = g.pointwise();
        let threads = rayon::current_num_threads().max(1);
        let br = block_rows(k, o, rows.div_ceil(threads));
        y.par_chunks_mut((br * o).max(1)).enumerate().for_each_init(
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
                    x[r0 * k..].as_ptr()
                } else {
                    g.gather(x, r0, n, buf);
                    buf.as_ptr()
                };
                // Zero the block while it is in cache: the product then only writes it.
                for v in yb.iter_mut() {
                    v.write(0.0);
                }
                // SAFETY: yb is n × o (initialised just above); lhs holds n × k (a block
                // of x or of buf); wm is k × o.
                unsafe {
                    matmul(
                        n,
                        o,
                        k,
                        yb.as_mut_ptr().cast::<f32>(),
                        false,
                        (lhs, k as isize, 1),
                        (wm.as_ptr(), o as isize, 1),
                    )
                };
            },
        );
        // SAFETY: the blocks cover y and each was written in full.
        let y = unsafe { assume_init(y) };
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.ho, g.wo, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        crate::packed_grads::input_and_weight_grads(x, weight, dy, |dx, dw| ConvNhwcBackward {
            g: self.0,
            dx,
            dw,
        })
    }
}

impl CustomOp3 for ConvNhwcBackward {
    fn name(&self) -> &'static str {
        "prototree-conv2d-nhwc-backward"
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
        let g = self.g;
        let x = contiguous(s1, l1, "input")?;
        let w = contiguous(s2, l2, "weight")?;
        let dy = contiguous(s3, l3, "output gradient")?;
        let wm = g.weight_matrix(w);
        let (k, o) = (g.k(), g.o);
        let (img_in, img_out) = (g.h * g.w * g.c, g.ho * g.wo);
        let nx = if self.dx { g.b * img_in } else { 0 };
        let nw = if self.dw { w.len() } else { 0 };
        let mut out = vec![0f32; nx + nw];
        let (dx_all, dw_out) = out.split_at_mut(nx);

        // Whole images per task, one task per thread: each task scatters only into its own
        // images and accumulates its own weight gradient.
        let tasks = rayon::current_num_threads().clamp(1, g.b.max(1));
        let per = g.b.div_ceil(tasks).max(1);
        let mut parts: Vec<(usize, Option<&mut [f32]>)> = Vec::with_capacity(tasks);
        if self.dx {
            for (t, chunk) in dx_all.chunks_mut((per * img_in).max(1)).enumerate() {
                parts.push((t * per, Some(chunk)));
            }
        } else {
            for t in 0..g.b.div_ceil(per) {
                parts.push((t * per, None));
            }
        }
        let pointwise = g.pointwise();
        let br = block_rows(k, o, per * img_out);
        let (want_dx, want_dw) = (self.dx, self.dw);
        let accs: Vec<Vec<f32>> = parts
            .into_par_iter()
            .map(|(img0, mut dx)| {
                let img1 = (img0 + per).min(g.b);
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
                    let dyb = dy[r0 * o..].as_ptr();
                    if want_dw {
                        let lhs = if pointwise {
                            x[r0 * k..].as_ptr()
                        } else {
                            g.gather(x, r0, n, &mut cols);
                            cols.as_ptr()
                        };
                        // SAFETY: acc is k × o; lhsᵀ is k × n (n rows of length k); dy's
                        // block is n × o.
                        unsafe {
                            matmul(
                                k,
                                o,
                                n,
                                acc.as_mut_ptr(),
                                true,
                                (lhs, 1, k as isize),
                                (dyb, o as isize, 1),
                            )
                        };
                    }
                    if let Some(dx) = dx.as_deref_mut() {
                        let dst = if pointwise {
                            dx[(r0 - r_start) * k..].as_mut_ptr()
                        } else {
                            gcols.as_mut_ptr()
                        };
                        // SAFETY: dst holds n × k (a block of dx or gcols); dy's block is
                        // n × o; wmᵀ is o × k (wm is k × o row-major).
                        unsafe {
                            matmul(
                                n,
                                k,
                                o,
                                dst,
                                false,
                                (dyb, o as isize, 1),
                                (wm.as_ptr(), 1, o as isize),
                            )
                        };
                        if !pointwise {
                            g.scatter(&gcols, r0, n, dx, img0);
                        }
                    }
                    r0 += n;
                }
                acc
            })
            .collect();
        if want_dw {
            let mut total = vec![0f32; k * o];
            for acc in &accs {
                for (t, a) in total.iter_mut().zip(acc) {
                    *t += *a;
                }
            }
            g.weight_grad_to_torch(&total, dw_out);
        }
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

/// Channels-last 2-D convolution (no bias) of a contiguous f32 CPU input, fused and
/// differentiable. `padding` is `(top, left)`; the bottom/right padding follows from the
/// output size `(ho, wo)`.
///
/// # Shapes
/// - `x`: `(b, h, w, c)`, `weight`: `(o, c, kh, kw)` → `(b, ho, wo, o)`
pub(crate) fn conv2d_nhwc_fused(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: (usize, usize),
    out: (usize, usize),
) -> candle_core::Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    let (o, _, kh, kw) = weight.dims4()?;
    let g = Geometry {
        b,
        h,
        w,
        c,
        o,
        kh,
        kw,
        stride: stride.max(1),
        pad_top: padding.0,
        pad_left: padding.1,
        ho: out.0,
        wo: out.1,
    };
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, ConvNhwc(g))
}
