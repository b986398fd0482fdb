//! The tree-head ops' CUDA kernels against the generic path on the CPU (values and
//! gradients), on the first CUDA device; skipped where there is none. Built only with the
//! `cuda` feature (and it cannot start without the NVIDIA driver). The GPU bundle runs the
//! same comparison as `gpu_check ops` (docs/cuda.md).

use candle_core::Device;
use prototree_ops::testing::tree_head_parity;

#[test]
fn cuda_kernels_match_the_generic_path() -> anyhow::Result<()> {
    let Ok(device) = Device::new_cuda(0) else {
        eprintln!("no CUDA device: skipped");
        return Ok(());
    };
    for check in tree_head_parity(&device)? {
        assert!(check.max_rel_diff < 1e-4, "{check:?}");
    }
    Ok(())
}
