//! The CUDA kernel of greedy path-only inference (`cuda` feature): one launch for the
//! whole batch, one block per image walking its tree from the root (a warp per patch,
//! lanes over the channels), so only the path's prototypes are ever touched and the host
//! reads the result once instead of once per level.

use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::cuda_backend::WrapErr;
use candle_core::Tensor;

use crate::cuda::{arg_u32, cuda_storage, output, per_image, view, MAX_SHARED_BYTES, MODULE, PTX};
use crate::greedy::{GreedyBranch, GreedyDecision, GreedyPath};

/// The op's name in errors.
const OP: &str = "greedy paths (CUDA)";

/// Threads per image block (4 warps).
const THREADS: u32 = 128;

/// Whether an image of `n` patches fits the kernel's shared memory.
pub(crate) fn fits(n: usize) -> bool {
    (n + THREADS as usize / 32) * std::mem::size_of::<f32>() <= MAX_SHARED_BYTES
}

/// Greedy paths of f32 CUDA tensors `patches (b, n, d)`, `prototypes (P, d)`; the
/// similarity of each decision from its minimum squared distance by `similarity`, the
/// host arithmetic of the other paths.
pub(crate) fn greedy_paths_cuda(
    patches: &Tensor,
    prototypes: &Tensor,
    branches: &[GreedyBranch],
    similarity: fn(f32) -> f32,
) -> candle_core::Result<Vec<GreedyPath>> {
    let (b, n, d) = patches.dims3()?;
    let depth = (branches.len() + 1).trailing_zeros() as usize;
    if b == 0 {
        return Ok(Vec::new());
    }
    let (patches, prototypes) = (patches.contiguous()?, prototypes.contiguous()?);
    let (g_z, l_z) = patches.storage_and_layout();
    let (g_p, l_p) = prototypes.storage_and_layout();
    let z_storage = cuda_storage(&g_z, OP)?;
    let dev = &z_storage.device;
    let z = view(z_storage, l_z, OP)?;
    let protos = view(cuda_storage(&g_p, OP)?, l_p, OP)?;
    let kinds: Vec<u32> = branches
        .iter()
        .map(|k| match k {
            GreedyBranch::Decide => 0,
            GreedyBranch::Right => 1,
            GreedyBranch::Left => 2,
        })
        .collect();
    let stream = dev.cuda_stream();
    let kinds = stream.clone_htod(&kinds).w()?;
    let min_sq = output::<f32>(dev, b * depth)?;
    let heaps = output::<u32>(dev, b * depth)?;
    let leaves = output::<u32>(dev, b)?;
    let (nu, du) = (arg_u32(n, OP)?, arg_u32(d, OP)?);
    let (bu, depth_u) = (arg_u32(branches.len(), OP)?, arg_u32(depth, OP)?);
    let func = dev.get_or_load_custom_func("greedy_paths_f32", MODULE, PTX)?;
    let mut launch = func.builder();
    launch
        .arg(&z)
        .arg(&protos)
        .arg(&kinds)
        .arg(&min_sq)
        .arg(&heaps)
        .arg(&leaves);
    launch.arg(&nu).arg(&du).arg(&bu).arg(&depth_u);
    let shared = (n + THREADS as usize / 32) * std::mem::size_of::<f32>();
    // SAFETY: b blocks each read their image's n·d patch values, the prototypes of the
    // nodes on its path (heap indices < branches ≤ P, checked by the caller) and the
    // branch kinds, and write depth values of min_sq and heaps and one leaf.
    unsafe { launch.launch(per_image(b, THREADS, shared)) }.w()?;
    let (min_sq, heaps, leaves) = (
        stream.clone_dtoh(&min_sq).w()?,
        stream.clone_dtoh(&heaps).w()?,
        stream.clone_dtoh(&leaves).w()?,
    );
    let mut paths = Vec::with_capacity(b);
    for bi in 0..b {
        let mut decisions = Vec::with_capacity(depth);
        for level in 0..depth {
            let heap = heaps[bi * depth + level] as usize;
            if branches.get(heap) == Some(&GreedyBranch::Decide) {
                decisions.push(GreedyDecision {
                    heap,
                    similarity: similarity(min_sq[bi * depth + level]),
                });
            }
        }
        paths.push(GreedyPath {
            leaf: leaves[bi] as usize,
            decisions,
        });
    }
    Ok(paths)
}
