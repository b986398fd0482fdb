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
