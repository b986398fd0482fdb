//! Errors of the backbone crate.

use std::path::PathBuf;

/// Everything that can go wrong while building a backbone or loading its weights.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch inside the network, device error, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A weight file could not be read or parsed (it names the file and the problem).
    #[error("cannot read weights: {0}")]
    Torch(#[from] prototree_torch::Error),
    /// The weights could not be loaded into the model.
    #[error("cannot read weights from {path}: {reason}")]
    WeightFile {
        /// The file that failed.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A weight file does not fit the architecture.
    #[error("weights in {path} do not fit {arch}: {details}")]
    WeightMismatch {
        /// The file that was loaded.
        path: PathBuf,
        /// The architecture it was loaded into.
        arch: String,
        /// Missing, unexpected and mis-shaped keys, one per line.
        details: String,
    },
    /// The input image batch has the wrong shape.
    #[error("backbone input must be (batch, 3, height, width) with height and width >= {min_size}, got {got:?}")]
    BadInput {
        /// Smallest supported side length.
        min_size: usize,
        /// The shape that was passed.
        got: Vec<usize>,
    },
    /// A classifier's weight `(k, c)` and bias `(k,)` do not fit the backbone's channels.
    #[error(
        "classifier weight {weight:?} and bias {bias:?} do not fit {channels} backbone channels"
    )]
    ClassifierShape {
        /// Shape of the weight.
        weight: Vec<usize>,
        /// Shape of the bias.
        bias: Vec<usize>,
        /// Channels of the backbone's features.
        channels: usize,
    },
    /// The small CNN was asked for a stride it does not have.
    #[error("the small CNN has stride 4 or 8, not {0}")]
    UnsupportedStride(usize),
    /// An unknown backbone name was given.
    #[error("unknown backbone `{0}` (expected one of: {known})", known = crate::BackboneKind::NAMES.join(", "))]
    UnknownBackbone(String),
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
