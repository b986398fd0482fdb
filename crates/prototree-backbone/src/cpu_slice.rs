//! The contiguous f32 data of a CPU tensor, for the fused CPU ops of this crate.

use candle_core::{CpuStorage, Layout};

/// The elements of `storage` that `layout` covers, or an error naming `op` when the
/// tensor is not contiguous.
pub(crate) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((a, b)) => data
            .get(a..b)
            .ok_or_else(|| candle_core::Error::Msg(format!("{op}: layout exceeds its storage"))),
        None => candle_core::bail!("{op} needs contiguous inputs"),
    }
}
