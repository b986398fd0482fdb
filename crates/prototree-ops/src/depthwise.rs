//! Depthwise 2-D convolution of channels-last tensors (EfficientNet-Lite): on the CPU one
//! fused op ([`crate::depthwise_cpu`]), elsewhere a sum of shifted, channel-scaled copies.

use candle_core::Tensor;

use crate::dispatch::fused_cpu_f32;
use crate::mismatch::shape_mismatch;
use crate::nhwc::{pad_nhwc, strided};
use crate::window::Window;

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
) -> candle_core::Result<Tensor> {
    let (wc, one, kh, kw) = weight.dims4()?;
    let win = Window::padded(x.dims4()?, (kh, kw), stride, rows, cols);
    let (c, ho, wo) = (win.c, win.ho, win.wo);
    if wc != c || one != 1 {
        return Err(shape_mismatch(x, weight, "depthwise_conv2d_nhwc"));
    }
    if fused_cpu_f32(&[x, weight]) {
        return crate::depthwise_cpu::depthwise_conv2d_nhwc_fused(x, weight, win);
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
    out.ok_or_else(|| candle_core::Error::Msg("depthwise convolution with an empty kernel".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{candle_padded_conv, max_relative_grad_diff, on_both_paths};
    use crate::window::same_padding;
    use candle_core::{Device, Var};

    /// The depthwise convolution (fused on the CPU) against candle's grouped `conv2d` of
    /// the explicitly padded input: outputs and the gradients of input and weights, for
    /// the kernels, strides and asymmetric "SAME" paddings EfficientNet-Lite uses.
    #[test]
    fn depthwise_matches_candle_grouped_conv() -> anyhow::Result<()> {
        on_both_paths(|_| depthwise_matches_candle_grouped_conv_here())
    }

    fn depthwise_matches_candle_grouped_conv_here() -> anyhow::Result<()> {
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
}
