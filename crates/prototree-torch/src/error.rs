//! Errors of reading PyTorch files.

use std::path::PathBuf;

use crate::pickle::PickleError;

/// Everything that can go wrong while reading a PyTorch file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor could not be built from its bytes.
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
    /// A pickle stream is malformed or uses an unsupported feature.
    #[error("{path}: {source}")]
    Pickle {
        /// The file.
        path: PathBuf,
        /// What the pickle reader found.
        source: PickleError,
    },
    /// A file is not a PyTorch file of the expected layout.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync>() {}
        check::<Error>();
    }

    #[test]
    fn messages_name_the_file() {
        let e = Error::BadFile {
            path: "w.pth".into(),
            reason: "zip archive without a `data.pkl` entry".into(),
        };
        assert_eq!(
            e.to_string(),
            "w.pth: zip archive without a `data.pkl` entry"
        );
    }
}
