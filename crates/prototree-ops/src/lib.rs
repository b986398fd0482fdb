//! Every custom tensor op of prototree-rs, on candle, with device dispatch inside each op.
//!
//! Each public function checks its inputs and picks its path itself: the fused CPU kernel
//! for f32 tensors on the CPU (`*_cpu` modules: blocked `gemm`, AVX2 where the CPU has it,
//! sparse or packed backward passes); on a CUDA device in f32 the tree-head ops
//! (min-distance, leaf paths, leaf update, greedy path-only) run their own CUDA kernels
//! (`cuda` feature, `kernels/tree_head.cu`); for every other op, device and dtype a
//! generic path of plain candle ops. `PROTOTREE_GENERIC_OPS=1` (or
//! [`with_generic_ops`]) forces the generic path on the CPU too, so a CPU-only machine
//! tests the GPU's code; [`testing`] compares the two paths.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let x = Tensor::randn(0f32, 1.0, (1, 8, 8, 3), &Device::Cpu)?;
//! let w = Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &Device::Cpu)?;
//! let fused = prototree_ops::conv2d_nhwc(&x, &w, 1, 1)?;
//! let generic = prototree_ops::with_generic_ops(|| prototree_ops::conv2d_nhwc(&x, &w, 1, 1))?;
//! assert!(prototree_ops::testing::max_relative_diff(&fused, &generic)? < 1e-5);
//! # Ok::<(), candle_core::Error>(())
//! ```
#![warn(missing_docs)]

mod add_relu;
mod batch_norm;
mod conv;
mod conv_cpu;
mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod depthwise;
mod depthwise_cpu;
pub mod dispatch;
pub mod distance;
mod gemm;
mod greedy;
#[cfg(feature = "cuda")]
mod greedy_cuda;
mod leaf_paths;
#[cfg(feature = "cuda")]
mod leaf_paths_cuda;
mod leaves;
#[cfg(feature = "cuda")]
mod leaves_cuda;
mod max_pool;
mod max_pool_cpu;
pub mod min_distance_argmin;
mod min_distance_cpu;
mod mismatch;
mod nhwc;
mod packed_grads;
pub mod reduction;
mod simd;
mod switch;
pub mod testing;
mod window;

pub use add_relu::add_relu;
pub use batch_norm::{batch_norm_apply, batch_norm_stats, Activation};
pub use conv::{conv2d_nhwc, conv2d_nhwc_padded};
pub use depthwise::depthwise_conv2d_nhwc;
pub use dispatch::{
    cuda_f32, fused_cpu_f32, generic_ops_forced, with_generic_ops, GENERIC_OPS_ENV,
};
pub use distance::{min_distances, DISTANCE_EPS};
pub use greedy::{greedy_paths, GreedyBranch, GreedyDecision, GreedyPath};
pub use leaf_paths::{leaf_path_probabilities, leaf_path_probabilities_generic};
pub use leaves::{leaf_mixture, leaf_update};
pub use max_pool::max_pool_nhwc;
pub use nhwc::pad_nhwc;
pub use window::{conv_out_size, same_padding};
