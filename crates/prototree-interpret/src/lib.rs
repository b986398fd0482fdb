//! Interpreting a trained prototype tree (spec §3–§6 of the ProtoTree reference): pruning
//! near-uniform subtrees, projecting prototypes onto their nearest training patches, the
//! binarized decision tree (petgraph) and local explanations of single predictions.
//! Drawing any of it is `prototree-render`'s job.
#![warn(missing_docs)]

mod bundle_ops;
pub mod collapse;
pub mod decision_tree;
pub mod error;
pub mod explain;
pub mod merge;
pub mod project;
pub mod prune;
pub mod top_patches;

pub use bundle_ops::Interpret;
pub use collapse::collapse_constant_decisions;
pub use decision_tree::{DecisionTree, Edge, TreeNode};
pub use error::{Error, Result};
pub use explain::{explain_latent, ExplainedStep, LocalExplanation};
pub use merge::merge_same_class_decisions;
pub use project::{
    project, project_with, ProjectionRule, SPECIFIC_CANDIDATES, SPECIFIC_MIN_SIMILARITY,
};
pub use prune::{prune, PruneReport};
pub use top_patches::{top_patches, TopPatch, TopPatches};
