//! Pruning, prototype projection, binarization, Graphviz export and explanations for
//! prototype trees (spec §3–§6 of the ProtoTree reference).
#![warn(missing_docs)]

pub mod decision_tree;
pub mod dot;
pub mod error;
pub mod explain;
pub mod explanation_page;
pub mod project;
pub mod prune;
pub mod report;
pub mod svg;
pub mod visualize;

pub use decision_tree::{DecisionTree, Edge, TreeNode};
pub use dot::DotExport;
pub use error::{Error, Result};
pub use explain::{explain_latent, ExplainedStep, LocalExplanation};
pub use explanation_page::ExplanationPage;
pub use project::project;
pub use prune::{prune, PruneReport};
pub use report::{AccuracyRow, ExplanationLink, GalleryEntry, Report};
pub use svg::SvgExport;
