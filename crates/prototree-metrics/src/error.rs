//! Errors of the metrics crate.

use std::path::PathBuf;

/// Everything that can go wrong while measuring explanation quality.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tree crate failed (model, topology, inference).
    #[error(transparent)]
    Tree(#[from] prototree_tree::Error),
    /// The data crate failed (data set layout, image decoding).
    #[error(transparent)]
    Data(#[from] prototree_data::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An annotation file (mask, `labels.txt`, `synth.json`) is malformed.
    #[error("{path}: {reason}")]
    BadAnnotation {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The model and the data set disagree, or an argument is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
