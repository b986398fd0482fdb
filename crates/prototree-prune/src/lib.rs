//! Pruning, prototype projection, binarization, Graphviz export and explanations for
//! prototype trees.
#![warn(missing_docs)]

pub mod error;

pub use error::{Error, Result};
