//! CUDA scaffolding of the tree-head kernels (`cuda` feature): the PTX of
//! `kernels/tree_head.cu` (compiled by `build.rs` with nvcc), loaded once per device as
//! one module, checked device views of contiguous f32 tensors, launch shapes.

use candle_core::cuda_backend::cudarc::driver::{CudaView, DeviceRepr, LaunchConfig};
use candle_core::{CudaDevice, CudaStorage, Layout, Storage};

/// The PTX of every tree-head kernel.
pub(crate) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/tree_head.ptx"));

/// The name of the module under which candle's device caches [`PTX`].
pub(crate) const MODULE: &str = "prototree-tree-head";

/// Threads per block of the one-thread-per-element kernels.
pub(crate) const THREADS: u32 = 256;

/// Shared memory a block may use without opting in (48 KiB on every CUDA GPU).
pub(crate) const MAX_SHARED_BYTES: usize = 48 * 1024;

/// The elements of `storage` that `layout` covers, as a device view; an error naming `op`
/// when the storage is not f32 or the layout not contiguous.
pub(crate) fn view<'a>(
    storage: &'a CudaStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<CudaView<'a, f32>> {
    let slice = storage.as_cuda_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((a, b)) if b <= slice.len() => Ok(slice.slice(a..b)),
        Some(_) => candle_core::bail!("{op}: layout exceeds its storage"),
        None => candle_core::bail!("{op} needs contiguous inputs"),
    }
}

/// A launch of `elements` threads in blocks of [`THREADS`].
pub(crate) fn per_element(elements: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (elements.div_ceil(THREADS as usize).max(1) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A launch of one block of `threads` per image, with `shared` bytes of dynamic shared
/// memory.
pub(crate) fn per_image(images: usize, threads: u32, shared: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (images as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: shared as u32,
    }
}

/// A fresh device buffer of `len` elements, every one of which the next kernel writes.
pub(crate) fn output<T: DeviceRepr>(
    dev: &CudaDevice,
    len: usize,
) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaSlice<T>> {
    // SAFETY: the kernel launched next writes every element before anything reads it.
    unsafe { dev.alloc::<T>(len.max(1)) }
}

/// `u32` from a size, or an error naming `op` when it does not fit a kernel argument.
pub(crate) fn arg_u32(v: usize, op: &str) -> candle_core::Result<u32> {
    u32::try_from(v).map_err(|_| candle_core::Error::Msg(format!("{op}: size {v} exceeds u32")))
}

/// The CUDA storage of a tensor, or an error naming `op` when it lives elsewhere.
pub(crate) fn cuda_storage<'a>(
    storage: &'a Storage,
    op: &str,
) -> candle_core::Result<&'a CudaStorage> {
    match storage {
        Storage::Cuda(cuda) => Ok(cuda),
        _ => candle_core::bail!("{op}: the CUDA kernel needs CUDA tensors"),
    }
}
