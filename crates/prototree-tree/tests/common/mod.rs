//! Setup shared by the integration tests, benches and examples of prototree-tree (the
//! latter two include it by path): the small trees they build and the metadata of the
//! model directories they write. Each binary uses a part.
#![allow(dead_code)]

use prototree_tree::io::Preprocessing;
use prototree_tree::{ModelMeta, TreeConfig};

/// The tree configuration of a test (the library's small-CNN test configuration).
pub use prototree_tree::testing::small_cnn_config as small_cnn;

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
