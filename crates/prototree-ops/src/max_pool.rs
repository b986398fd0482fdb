//! Max-pooling of channels-last tensors: on the CPU one fused op
//! ([`crate::max_pool_cpu`]), elsewhere the maximum of shifted copies.

use candle_core::Tensor;

use crate::dispatch::fused_cpu_f32;
use crate::nhwc::strided;
use crate::window::conv_out_size;

/// `k × k` max-pooling with `stride` and `padding` of a channels-last input.
///
/// Padded cells never win (PyTorch's `−∞` padding); off the CPU the padding is zeros, which
/// is the same when the input is non-negative (as after a ReLU, where ResNet pools). The
/// gradient goes to the first maximum of each window.
///
/// # Shapes
/// - `x`: `(b, h, w, c)` → `(b, h_out, w_out, c)`
pub fn max_pool_nhwc(
    x: &Tensor,
    k: usize,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    let (ho, wo) = (
        conv_out_size(h, k, stride, padding),
        conv_out_size(w, k, stride, padding),
    );
    if fused_cpu_f32(&[x]) {
        return crate::max_pool_cpu::max_pool_nhwc_fused(x, k, stride, padding, (ho, wo));
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
    out.ok_or_else(|| candle_core::Error::Msg("max pool with an empty kernel".into()))
}
