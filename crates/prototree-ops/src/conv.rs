//! Channels-last 2-D convolution as im2col + matrix product: on the CPU one fused custom
//! op ([`crate::conv_cpu`]), elsewhere built from tensor ops whose gradients are cheap in
//! candle (padding, slicing, stacking, matmul).
//!
//! candle's CPU `conv2d` backward runs a direct `conv_transpose2d` and a convolution
//! with the whole feature map as kernel, which makes training ~10× slower than inference.
//! Here the forward is `(b·h·w, c·k·k) × (c·k·k, o)` and both gradients are matrix
//! products too. Weights keep PyTorch's `(o, c, kh, kw)` layout.

use candle_core::{Tensor, D};

use crate::dispatch::fused_cpu_f32;
use crate::mismatch::shape_mismatch;
use crate::nhwc::{pad_nhwc, strided};
use crate::window::Window;

/// 2-D convolution (no bias) of a channels-last input.
///
/// # Shapes
/// - `x`: `(b, h, w, c)`
/// - `weight`: `(o, c, kh, kw)` (PyTorch layout)
/// - returns `(b, h_out, w_out, o)`
pub fn conv2d_nhwc(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    let (o, wc, kh, kw) = weight.dims4()?;
    let pad = (padding, padding);
    let win = Window::padded(x.dims4()?, (kh, kw), stride, pad, pad);
    let (b, c, ho, wo) = (win.b, win.c, win.ho, win.wo);
    if wc != c {
        return Err(shape_mismatch(x, weight, "conv2d_nhwc"));
    }
    // On the CPU (f32): one fused op, im2col in blocks feeding the matrix product.
    if fused_cpu_f32(&[x, weight]) {
        return crate::conv_cpu::conv2d_nhwc_fused(x, weight, win);
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
    cols.matmul(&wmat.t()?)?.reshape((b, ho, wo, o))
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
) -> candle_core::Result<Tensor> {
    if rows.0 == rows.1 && cols.0 == cols.1 && rows.0 == cols.0 {
        return conv2d_nhwc(x, weight, stride, rows.0);
    }
    let (_, wc, kh, kw) = weight.dims4()?;
    let win = Window::padded(x.dims4()?, (kh, kw), stride, rows, cols);
    if fused_cpu_f32(&[x, weight]) && wc == win.c {
        return crate::conv_cpu::conv2d_nhwc_fused(x, weight, win);
    }
    conv2d_nhwc(&pad_nhwc(x, rows, cols)?, weight, stride, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{candle_padded_conv, max_relative_grad_diff, on_both_paths};
    use crate::window::same_padding;
    use candle_core::{Device, Var};

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
        on_both_paths(|_| matches_candle_conv2d_here())
    }

    fn matches_candle_conv2d_here() -> anyhow::Result<()> {
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
        on_both_paths(|_| gradients_match_candle_conv2d_here())
    }

    fn gradients_match_candle_conv2d_here() -> anyhow::Result<()> {
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

    /// The asymmetrically padded convolution (the stem) against candle's `conv2d` of the
    /// explicitly padded input, forward and backward.
    #[test]
    fn asymmetric_padding_matches_padded_candle_conv() -> anyhow::Result<()> {
        on_both_paths(|_| asymmetric_padding_matches_padded_candle_conv_here())
    }

    fn asymmetric_padding_matches_padded_candle_conv_here() -> anyhow::Result<()> {
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
