//! Errors of the facade: any of the member crates' errors, with context.

use std::path::PathBuf;

/// Everything the high-level pipeline can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data set or image problem.
    #[error(transparent)]
    Data(#[from] prototree_data::Error),
    /// A model, training or file-format problem.
    #[error(transparent)]
    Tree(#[from] prototree_tree::Error),
    /// A backbone problem.
    #[error(transparent)]
    Backbone(#[from] prototree_backbone::Error),
    /// A pruning / projection / export problem.
    #[error(transparent)]
    Prune(#[from] prototree_prune::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The data and the model disagree.
    #[error("{0}")]
    Mismatch(String),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An invalid setting.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Result type of the facade.
pub type Result<T> = std::result::Result<T, Error>;
