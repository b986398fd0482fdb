//! Setup shared by the integration tests, benches and examples of prototree-tree (the
//! latter two include it by path): the small trees they build and the metadata of the
//! model directories they write. Each binary uses a part.
#![allow(dead_code)]

use prototree_backbone::BackboneKind;
use prototree_tree::io::Preprocessing;
use prototree_tree::{ModelMeta, TreeConfig};

/// The tree configuration of a test: the small CNN backbone with a tree of `depth`,
/// prototypes of `proto_dim` channels and `num_classes` classes (not yet checked).
pub fn small_cnn(depth: usize, proto_dim: usize, num_classes: usize) -> TreeConfig {
    TreeConfig {
        backbone: BackboneKind::SmallCnn,
        depth,
        proto_dim,
        num_classes,
    }
}

/// The metadata of a trained test model of `tree` whose classes are `class_names`, for
/// `image_size`-pixel inputs normalised with mean 0.5 and standard deviation `std`.
pub fn trained_meta(
    tree: TreeConfig,
    class_names: Vec<String>,
    image_size: u32,
    std: f32,
) -> ModelMeta {
    ModelMeta {
        format_version: 1,
        tree,
        class_names,
        preprocessing: Preprocessing {
            image_size,
            mean: [0.5; 3],
            std: [std; 3],
        },
        train: None,
    }
}
