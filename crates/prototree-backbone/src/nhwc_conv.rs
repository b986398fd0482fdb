//! Channels-last convolution as im2col + matrix product: on the CPU one fused custom op
//! (`conv_op`), elsewhere built from tensor ops whose gradients are cheap in candle
//! (padding, slicing, stacking, matmul).
//!
//! candle's CPU `conv2d` backward runs a direct `conv_transpose2d` and a convolution
//! with the whole feature map as kernel, which makes training ~10× slower than inference.
//! Here the forward is `(b·h·w, c·k·k) × (c·k·k, o)` and both gradients are matrix
//! products too. Weights keep PyTorch's `(o, c, kh, kw)` layout.

use candle_core::{Tensor, D};

use crate::Result;

/// Output side of a convolution.
pub fn conv_out_size(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    padded_out_size(input, kernel, stride, (padding, padding))
}

/// Rows `start, start + stride, …` (`count` of them) of dimension `dim`.
fn strided(x: &Tensor, dim: usize, start: usize, count: usize, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(x.narrow(dim, start, count)?);
    }
    // Take count·stride rows (padding the end with zeros if the input is too short),
    // split them into (count, stride) and keep the first of each group.
    let avail = x.dim(dim)? - start;
    let want = count * stride;
    let slice = if avail >= want {
        x.narrow(dim, start, want)?
    } else {
        x.narrow(dim, start, avail)?
            .pad_with_zeros(dim, 0, want - avail)?
    };
    let mut dims = slice.dims().to_vec();
    dims[dim] = count;
    dims.insert(dim + 1, stride);
    Ok(slice
        .reshape(dims)?
        .narrow(dim + 1, 0, 1)?
        .squeeze(dim + 1)?)
}

/// 2-D convolution (no bias) of a channels-last input.
///
/// # Shapes
/// - `x`: `(b, h, w, c)`
/// - `weight`: `(o, c, kh, kw)` (PyTorch layout)
/// - returns `(b, h_out, w_out, o)`
pub fn conv2d_nhwc(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    let (o, wc, kh, kw) = weight.dims4()?;
    if wc != c {
        return Err(candle_core::Error::ShapeMismatchBinaryOp {
            lhs: x.shape().clone(),
            rhs: weight.shape().clone(),
            op: "conv2d_nhwc",
        }
        .into());
    }
    let (ho, wo) = (
        conv_out_size(h, kh, stride, padding),
        conv_out_size(w, kw, stride, padding),
    );
    // On the CPU (f32): one fused op, im2col in blocks feeding the matrix product.
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        return Ok(crate::conv_op::conv2d_nhwc_fused(
            x,
            weight,
            stride,
            (padding, padding),
            (ho, wo),
        )?);
    }
    let x = if padding > 0 {
        x.pad_with_zeros(1, padding, padding)?
            .pad_with_zeros(2, padding, padding)?
    } else {
        x.clone()
    };
    let cols = if kh == 1 && kw == 1 {
        strided(&strided(&x, 1, 0, ho, stride)?, 2, 0, wo, stride)?.reshape((b * ho * wo, c))?
    } else {
        let mut taps = Vec::with_capacity(kh * kw);
        for ky in 0..kh {
            let rows = strided(&x, 1, ky, ho, stride)?;
            for kx in 0..kw {
                taps.push(strided(&rows, 2, kx, wo, stride)?);
            }
        }
        // (b, ho, wo, c, kh·kw): column index c·kh·kw + ky·kw + kx, as in PyTorch weights.
        Tensor::stack(&taps, D::Minus1)?.reshape((b * ho * wo, c * kh * kw))?
    };
    let wmat = weight.reshape((o, c * kh * kw))?;
    Ok(cols.matmul(&wmat.t()?)?.reshape((b, ho, wo, o))?)
}

/// `k × k` max-pooling with `stride` and `padding` of a channels-last input.
///
/// Padded cells never win (PyTorch's `−∞` padding); off the CPU the padding is zeros, which
/// is the same when the input is non-negative (as after a ReLU, where ResNet pools). The
/// gradient goes to the first maximum of each window.
///
/// # Shapes
/// - `x`: `(b, h, w, c)` → `(b, h_out, w_out, c)`
pub fn max_pool_nhwc(x: &Tensor, k: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    let (ho, wo) = (
        conv_out_size(h, k, stride, padding),
        conv_out_size(w, k, stride, padding),
    );
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        return Ok(crate::max_pool_op::max_pool_nhwc_fused(
            x,
            k,
            stride,
            padding,
            (ho, wo),
        )?);
    }
    let x = if padding > 0 {
        x.pad_with_zeros(1, padding, padding)?
            .pad_with_zeros(2, padding, padding)?
    } else {
        x.clone()
    };
    let mut out: Option<Tensor> = None;
    for ky in 0..k {
        let rows = strided(&x, 1, ky, ho, stride)?;
        for kx in 0..k {
            let tap = strided(&rows, 2, kx, wo, stride)?;
            out = Some(match out {
                Some(m) => m.maximum(&tap)?,
                None => tap,
            });
        }
    }
    out.ok_or_else(|| candle_core::Error::Msg("max pool with an empty kernel".into()).into())
}

/// `relu(a + b)` of two same-shaped tensors (the residual join), fused into one pass on
/// the CPU (f32), whose backward keeps only the output.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.device().is_cpu() && a.dtype() == candle_core::DType::F32 {
        return Ok(crate::add_relu_op::add_relu_fused(a, b)?);
    }
    Ok((a + b)?.relu()?)
}

/// TensorFlow "SAME" padding `(before, after)` of one side for `kernel` and `stride`.
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let stride = stride.max(1);
    let out = input.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2)
}

/// Zero padding of a channels-last input: `(top, bottom)` rows and `(left, right)` columns.
pub fn pad_nhwc(x: &Tensor, rows: (usize, usize), cols: (usize, usize)) -> Result<Tensor> {
    let mut x = x.clone();
    if rows.0 + rows.1 > 0 {
        x = x.pad_with_zeros(1, rows.0, rows.1)?;
    }
    if cols.0 + cols.1 > 0 {
        x = x.pad_with_zeros(2, cols.0, cols.1)?;
    }
    Ok(x)
}

/// Depthwise 2-D convolution (one `kh × kw` filter per channel, no bias) of a
/// channels-last input with zero padding of `rows = (top, bottom)` and
/// `cols = (left, right)` (asymmetric, as TensorFlow's "SAME", allowed).
///
/// On the CPU (f32) one fused op that reads the padding as skipped taps; elsewhere a sum
/// of `kh·kw` shifted, channel-scaled copies of the padded input.
///
/// # Shapes
/// - `x`: `(b, h, w, c)`, `weight`: `(c, 1, kh, kw)` (PyTorch layout)
/// - returns `(b, h_out, w_out, c)`
pub fn depthwise_conv2d_nhwc(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    rows: (usize, usize),
    cols: (usize, usize),
) -> Result<Tensor> {
    let (_, h, w, c) = x.dims4()?;
    let (wc, one, kh, kw) = weight.dims4()?;
    if wc != c || one != 1 {
        return Err(candle_core::Error::ShapeMismatchBinaryOp {
            lhs: x.shape().clone(),
            rhs: weight.shape().clone(),
            op: "depthwise_conv2d_nhwc",
        }
        .into());
    }
    let (ho, wo) = (
        padded_out_size(h, kh, stride, rows),
        padded_out_size(w, kw, stride, cols),
    );
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        return Ok(crate::depthwise_op::depthwise_conv2d_nhwc_fused(
            x,
            weight,
            stride,
            (rows.0, cols.0),
            (ho, wo),
        )?);
    }
    let x = pad_nhwc(x, rows, cols)?;
    // (c, kh·kw) → per tap a (c,) row broadcast over (b, ho, wo, c).
    let taps_w = weight.reshape((c, kh * kw))?.t()?.contiguous()?;
    let mut out: Option<Tensor> = None;
    for ky in 0..kh {
        let tap_rows = strided(&x, 1, ky, ho, stride)?;
        for kx in 0..kw {
            let tap = strided(&tap_rows, 2, kx, wo, stride)?;
            let term = tap.broadcast_mul(&taps_w.get(ky * kw + kx)?)?;
            out = Some(match out {
                Some(o) => (o + term)?,
                None => term,
            });
        }
    }
    out.ok_or_else(|| {
        candle_core::Error::Msg("depthwise convolution with an empty kernel".into()).into()
    })
}

/// Output side of a convolution with `(before, after)` padding.
fn padded_out_size(input: usize, kernel: usize, stride: usize, pad: (usize, usize)) -> usize {
    (input + pad.0 + pad.1).saturating_sub(kernel) / stride.max(1) + 1
}

/// 2-D convolution (no bias) of a channels-last input with zero padding of
/// `rows = (top, bottom)` and `cols = (left, right)`, which may be asymmetric (TensorFlow's
/// "SAME"). On the CPU (f32) the padding is never materialised.
///
/// # Shapes
/// - `x`: `(b, h, w, c)`, `weight`: `(o, c, kh, kw)` → `(b, h_out, w_out, o)`
pub fn conv2d_nhwc_padded(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    rows: (usize, usize),
    cols: (usize, usize),
) -> Result<Tensor> {
    if rows.0 == rows.1 && cols.0 == cols.1 && rows.0 == cols.0 {
        return conv2d_nhwc(x, weight, stride, rows.0);
    }
    let (_, h, w, c) = x.dims4()?;
    let (_, wc, kh, kw) = weight.dims4()?;
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && wc == c {
        let out = (
            padded_out_size(h, kh, stride, rows),
            padded_out_size(w, kw, stride, cols),
        );
        return Ok(crate::conv_op::conv2d_nhwc_fused(
            x,
            weight,
            stride,
            (rows.0, cols.0),
            out,
        )?);
    }
    conv2d_nhwc(&pad_nhwc(x, rows, cols)?, weight, stride, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::backprop::GradStore;
    use candle_core::{Device, Var};

    /// Largest difference between the gradients of `vars` in two stores, relative to the
    /// largest magnitude of the second (at least 1).
    fn max_relative_grad_diff(
        ours: &GradStore,
        theirs: &GradStore,
        vars: &[&Var],
    ) -> anyhow::Result<f32> {
        let mut worst = 0f32;
        for v in vars {
            let a = ours.get(v.as_tensor()).expect("gradient of ours");
            let b = theirs.get(v.as_tensor()).expect("gradient of candle's");
            let scale = b.abs()?.max_all()?.to_scalar::<f32>()?.max(1.0);
            let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            worst = worst.max(diff / scale);
        }
        Ok(worst)
    }

    fn check_against_candle(stride: usize, padding: usize, k: usize) -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 9, 8), &dev)?;
        let wt = Tensor::randn(0f32, 1.0, (4, 3, k, k), &dev)?;
        let want = x.conv2d(&wt, padding, stride, 1, 1)?;
        let got =
            conv2d_nhwc(&x.permute((0, 2, 3, 1))?, &wt, stride, padding)?.permute((0, 3, 1, 2))?;
        assert_eq!(
            got.dims(),
            want.dims(),
            "stride {stride} pad {padding} k {k}"
        );
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "diff {diff}");
        Ok(())
    }

    #[test]
    fn matches_candle_conv2d() -> anyhow::Result<()> {
        for (s, p, k) in [
            (1, 1, 3),
            (2, 1, 3),
            (1, 0, 1),
            (2, 0, 1),
            (2, 3, 7),
            (1, 0, 3),
        ] {
            check_against_candle(s, p, k)?;
        }
        Ok(())
    }

    #[test]
    fn gradients_match_candle_conv2d() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        // (stride, padding, kernel, side): the fused im2col op and its col2im backward on
        // the strided, padded and odd-sized cases ResNet and EfficientNet use.
        for (s, p, k, n) in [
            (1, 1, 3, 6),
            (2, 3, 7, 9),
            (2, 1, 3, 7),
            (2, 0, 1, 8),
            (1, 0, 1, 5),
            // 3·144 rows: blocks of 256 rows that straddle images.
            (1, 1, 3, 12),
        ] {
            // Three images: the backward splits whole images between threads.
            let x = Var::randn(0f32, 1.0, (3, 3, n, n), &dev)?;
            let wt = Var::randn(0f32, 1.0, (4, 3, k, k), &dev)?;
            let ours = conv2d_nhwc(&x.as_tensor().permute((0, 2, 3, 1))?, wt.as_tensor(), s, p)?
                .sqr()?
                .sum_all()?;
            let theirs = x
                .as_tensor()
                .conv2d(wt.as_tensor(), p, s, 1, 1)?
                .sqr()?
                .sum_all()?;
            let (g1, g2) = (ours.backward()?, theirs.backward()?);
            let diff = max_relative_grad_diff(&g1, &g2, &[&x, &wt])?;
            assert!(diff < 1e-4, "s {s} p {p} k {k}: diff {diff}");
        }
        Ok(())
    }

    /// candle's `conv2d` (with `groups`) of the explicitly zero-padded channels-last input,
    /// back to channels-last: the reference for the asymmetric "SAME" paddings.
    fn candle_padded_conv(
        x: &Tensor,
        weight: &Tensor,
        stride: usize,
        rows: (usize, usize),
        cols: (usize, usize),
        groups: usize,
    ) -> anyhow::Result<Tensor> {
        Ok(pad_nhwc(x, rows, cols)?
            .permute((0, 3, 1, 2))?
            .conv2d(weight, 0, stride, 1, groups)?
            .permute((0, 2, 3, 1))?)
    }

    /// The depthwise convolution (fused on the CPU) against candle's grouped `conv2d` of
    /// the explicitly padded input: outputs and the gradients of input and weights, for
    /// the kernels, strides and asymmetric "SAME" paddings EfficientNet-Lite uses.
    #[test]
    fn depthwise_matches_candle_grouped_conv() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        // (kernel, stride, side): even and odd sides at stride 2 give asymmetric padding.
        for (k, s, n) in [
            (3, 1, 7),
            (3, 2, 8),
            (3, 2, 9),
            (5, 1, 6),
            (5, 2, 10),
            (5, 2, 7),
        ] {
            let c = 6;
            let (rows, cols) = (same_padding(n, k, s), same_padding(n + 1, k, s));
            let x = Var::randn(0f32, 1.0, (3, n, n + 1, c), &dev)?;
            let wt = Var::randn(0f32, 1.0, (c, 1, k, k), &dev)?;
            let up_dims = (3, n.div_ceil(s), (n + 1).div_ceil(s), c);
            let up = Tensor::randn(0f32, 1.0, up_dims, &dev)?;
            let ours = depthwise_conv2d_nhwc(x.as_tensor(), wt.as_tensor(), s, rows, cols)?;
            let theirs = candle_padded_conv(x.as_tensor(), wt.as_tensor(), s, rows, cols, c)?;
            assert_eq!(ours.dims(), theirs.dims(), "k {k} s {s} n {n}");
            let diff = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "k {k} s {s} n {n}: output diff {diff}");
            let g1 = (ours * &up)?.sum_all()?.backward()?;
            let g2 = (theirs * &up)?.sum_all()?.backward()?;
            let diff = max_relative_grad_diff(&g1, &g2, &[&x, &wt])?;
            assert!(diff < 1e-5, "k {k} s {s} n {n}: grad diff {diff}");
        }
        Ok(())
    }

    /// The asymmetrically padded convolution (the stem) against candle's `conv2d` of the
    /// explicitly padded input, forward and backward.
    #[test]
    fn asymmetric_padding_matches_padded_candle_conv() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        for n in [8, 9] {
            let (rows, cols) = (same_padding(n, 3, 2), same_padding(n + 1, 3, 2));
            let x = Var::randn(0f32, 1.0, (2, n, n + 1, 3), &dev)?;
            let wt = Var::randn(0f32, 1.0, (4, 3, 3, 3), &dev)?;
            let ours = conv2d_nhwc_padded(x.as_tensor(), wt.as_tensor(), 2, rows, cols)?;
            let theirs = candle_padded_conv(x.as_tensor(), wt.as_tensor(), 2, rows, cols, 1)?;
            assert_eq!(ours.dims(), theirs.dims());
            let diff = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-4, "n {n}: output diff {diff}");
            let g1 = ours.sqr()?.sum_all()?.backward()?;
            let g2 = theirs.sqr()?.sum_all()?.backward()?;
            let diff = max_relative_grad_diff(&g1, &g2, &[&x, &wt])?;
            assert!(diff < 1e-4, "n {n}: grad diff {diff}");
        }
        Ok(())
    }
}
