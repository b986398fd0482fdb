//! [`LimitError`]: a value over its limit; [`Error`]: that or an unreadable file.

use std::path::PathBuf;

/// A size or number from a file or a flag that is over (or outside) its limit.
///
/// `Display` is one line: `FILE: `FIELD` is VALUE, LIMIT`, e.g.
/// `model/config.json: `tree.proto_dim` is 1099511627776, over the limit of 16384`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}`{field}` is {value}, {limit}", prefix(.file))]
pub struct LimitError {
    /// The file (or `--flag`, or data set) the value came from; empty when the caller
    /// names it (see [`LimitError::in_file`]).
    pub file: String,
    /// The field, e.g. `tree.proto_dim`, `zip entry data/0`, `pickle memo entries`.
    pub field: String,
    /// The value as given.
    pub value: String,
    /// What the limit is, e.g. `over the limit of 16384`, `must be finite and > 0`.
    pub limit: String,
}

fn prefix(file: &str) -> String {
    if file.is_empty() {
        String::new()
    } else {
        format!("{file}: ")
    }
}

impl LimitError {
    /// A value over a limit.
    pub fn new(
        file: impl Into<String>,
        field: impl Into<String>,
        value: impl std::fmt::Display,
        limit: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            field: field.into(),
            value: value.to_string(),
            limit: limit.into(),
        }
    }

    /// The same error, naming `file` (kept when one is already named).
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        if self.file.is_empty() {
            self.file = file.into();
        }
        self
    }
}

/// Reading a file under a limit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value over its limit.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
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
        check::<LimitError>();
        check::<Error>();
    }

    #[test]
    fn one_line_naming_file_field_value_and_limit() {
        let e = LimitError::new("m/config.json", "tree.depth", 60, "over the limit of 16");
        assert_eq!(
            e.to_string(),
            "m/config.json: `tree.depth` is 60, over the limit of 16"
        );
        let e = LimitError::new("", "lr", "NaN", "must be finite and > 0");
        assert_eq!(e.to_string(), "`lr` is NaN, must be finite and > 0");
        assert_eq!(
            e.in_file("run.toml").to_string(),
            "run.toml: `lr` is NaN, must be finite and > 0"
        );
    }
}
