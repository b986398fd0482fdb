//! Errors of the tree crate.

use std::path::PathBuf;

/// A configuration value that [`crate::TreeConfig::check`] or
/// [`crate::TrainConfig::check`] rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The tree depth is outside the supported range.
    #[error("tree depth must be between 1 and {max}, got {got}")]
    Depth {
        /// Largest supported depth.
        max: usize,
        /// The given depth.
        got: usize,
    },
    /// A size that must be positive is zero.
    #[error("`{name}` must be at least 1")]
    Zero {
        /// The field.
        name: &'static str,
    },
    /// A number that must be finite and positive (or non-negative) is not.
    #[error("`{name}` must be {requirement}, got {got}")]
    OutOfRange {
        /// The field.
        name: &'static str,
        /// What it must be.
        requirement: &'static str,
        /// The given value.
        got: f64,
    },
    /// Milestones are not strictly increasing.
    #[error("milestones must be strictly increasing epochs >= 1, got {0:?}")]
    Milestones(Vec<usize>),
    /// A size or rate over its limit ([`prototree_limits::maxima`], the memory budget).
    #[error(transparent)]
    Limit(Box<prototree_limits::LimitError>),
}

impl From<prototree_limits::LimitError> for ConfigError {
    fn from(e: prototree_limits::LimitError) -> Self {
        ConfigError::Limit(Box::new(e))
    }
}

impl ConfigError {
    /// The same error with its field named inside `section` (`tree.proto_dim`,
    /// `preprocessing.std[1]`), as a line for a file's error message.
    pub fn in_section(&self, section: &str) -> String {
        match self {
            ConfigError::Limit(l) => prototree_limits::LimitError {
                field: format!("{section}.{}", l.field),
                ..(**l).clone()
            }
            .to_string(),
            ConfigError::Zero { name } => format!("`{section}.{name}` must be at least 1"),
            ConfigError::OutOfRange {
                name,
                requirement,
                got,
            } => format!("`{section}.{name}` must be {requirement}, got {got}"),
            other => format!("{section}: {other}"),
        }
    }
}

/// Everything that can go wrong in the tree crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration was invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The backbone failed.
    #[error(transparent)]
    Backbone(#[from] prototree_backbone::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A tensor has an unexpected shape.
    #[error("tensor `{tensor}` has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor's name.
        tensor: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The actual shape.
        got: Vec<usize>,
    },
    /// A label is not a valid class index.
    #[error("label {label} is out of range for {num_classes} classes")]
    LabelOutOfRange {
        /// The label.
        label: u32,
        /// Number of classes of the model.
        num_classes: usize,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A model file is malformed or does not fit the configuration.
    #[error("{path}: {reason}")]
    BadModelFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A model was saved by a newer, incompatible version.
    #[error("{path}: format version {found} is newer than the supported version {supported}; upgrade prototree")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// An error raised by the caller's data source.
    #[error("data source: {0}")]
    Data(String),
    /// A prediction came out NaN or infinite: garbage arithmetic is an error, not output.
    #[error("the prediction for image {image} is not finite (NaN or infinity): the model's weights or the input are damaged")]
    NonFinitePrediction {
        /// The image's index in the batch.
        image: usize,
    },
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
