//! CPU-side scaffolding of the fused kernels: checked slices of tensors, and output
//! buffers written in full without being zeroed first.

use candle_core::{CpuStorage, Layout, Storage, Tensor};

/// The elements of `storage` that `layout` covers, or an error naming `op` when the
/// tensor is not contiguous or its layout exceeds its storage.
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

/// Runs `f` on the f32 values of a contiguous CPU tensor, without copying them; an error
/// naming `op` when the tensor is elsewhere or not contiguous.
pub(crate) fn with_cpu_slice<R>(
    t: &Tensor,
    op: &str,
    f: impl FnOnce(&[f32]) -> R,
) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(contiguous_f32(cpu, layout, op)?)),
        _ => candle_core::bail!("{op}: the fused kernel needs a CPU tensor"),
    }
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

/// Zeroes `block` and returns it as initialised values.
pub(crate) fn zeroed(block: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    for v in block.iter_mut() {
        v.write(0.0);
    }
    // SAFETY: every element was written just above; MaybeUninit<f32> has f32's layout.
    unsafe { std::slice::from_raw_parts_mut(block.as_mut_ptr().cast::<f32>(), block.len()) }
}

/// Writes the `cpu_fwd` of a candle custom op (`CustomOp1/2/3`) whose inputs are all f32:
/// `fused_cpu_fwd!(self, "op", |(x, lx), (w, _lw)| { .. })` declares one storage and one
/// layout per input, binds each input's name to its elements (checked by
/// [`contiguous_f32`], the error naming the op and the input) and each layout's name to its
/// layout, then runs the body, which returns the output storage and shape.
macro_rules! fused_cpu_fwd {
    ($self:ident, $op:literal, |$(($x:ident, $l:ident)),+| $body:block) => {
        fn cpu_fwd(
            &$self,
            $($x: &candle_core::CpuStorage, $l: &candle_core::Layout),+
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            $(let $x = $crate::cpu::contiguous_f32(
                $x,
                $l,
                concat!($op, " (", stringify!($x), ")"),
            )?;)+
            $body
        }
    };
}
pub(crate) use fused_cpu_fwd;
