//! Errors of the data crate: every one names the file (and the line, for text files).

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing data sets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A metadata text file has a bad line.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The data set is inconsistent (missing entries, unknown ids, ...).
    #[error("{path}: {reason}")]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An image could not be decoded or encoded.
    #[error("{path}: cannot decode image: {reason}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// An invalid setting.
    #[error("invalid setting: {0}")]
    Config(String),
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Wraps an I/O error with its path.
pub(crate) fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
