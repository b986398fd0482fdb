//! Pruning, prototype projection, binarization, Graphviz export and explanations for
//! prototype trees (spec §3–§6 of the ProtoTree reference).
#![warn(missing_docs)]

pub mod error;
pub mod project;
pub mod prune;

pub use error::{Error, Result};
pub use project::project;
pub use prune::{prune, PruneReport};
