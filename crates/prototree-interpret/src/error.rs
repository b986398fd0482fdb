//! Errors of the interpret crate.

/// Everything that can go wrong while pruning, projecting or exporting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tree crate failed.
    #[error(transparent)]
    Tree(#[from] prototree_tree::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An invalid argument.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
