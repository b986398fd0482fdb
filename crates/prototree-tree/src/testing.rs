//! Small models for tests, examples and benchmarks of this crate and the crates above.

use candle_core::Device;
use prototree_backbone::BackboneKind;

use crate::config::TreeConfig;
use crate::model::ProtoTree;
use crate::Result;

/// The configuration of a tree of `depth` over the small CNN with `proto_dim`-channel
/// prototypes and `num_classes` classes (not yet checked).
pub fn small_cnn_config(depth: usize, proto_dim: usize, num_classes: usize) -> TreeConfig {
    TreeConfig {
        backbone: BackboneKind::SmallCnn,
        depth,
        proto_dim,
        num_classes,
    }
}

/// A tree of [`small_cnn_config`] on the CPU, initialised with `seed`.
pub fn small_cnn_tree(
    depth: usize,
    proto_dim: usize,
    num_classes: usize,
    seed: u64,
) -> Result<ProtoTree> {
    let config = small_cnn_config(depth, proto_dim, num_classes).check()?;
    ProtoTree::new(&config, &Device::Cpu, seed)
}

/// A [`small_cnn_tree`] whose leaves hold random logits (normal, σ = 2), so that leaves
/// differ in their top class.
pub fn small_cnn_tree_with_random_leaves(
    depth: usize,
    proto_dim: usize,
    num_classes: usize,
    seed: u64,
) -> Result<ProtoTree> {
    let mut tree = small_cnn_tree(depth, proto_dim, num_classes, seed)?;
    let logits = candle_core::Tensor::randn(0f32, 2.0, (1 << depth, num_classes), &Device::Cpu)?;
    tree.set_leaves(crate::Leaves::from_params(logits)?)?;
    Ok(tree)
}
