//! Errors of the facade: any of the member crates' errors, with context.

use std::path::PathBuf;

/// Everything the high-level pipeline can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data set or image problem.
    #[error(transparent)]
    Data(#[from] prototree_data::Error),
    /// A model or file-format problem.
    #[error(transparent)]
    Tree(#[from] prototree_tree::Error),
    /// A training problem (including an interrupt and run-directory refusals).
    #[error(transparent)]
    Learn(#[from] prototree_learn::Error),
    /// A backbone problem.
    #[error(transparent)]
    Backbone(#[from] prototree_backbone::Error),
    /// A pruning / projection / export problem.
    #[error(transparent)]
    Interpret(#[from] prototree_interpret::Error),
    /// An explanation-metrics problem (missing part annotations, a model that does not fit
    /// the data set).
    #[error(transparent)]
    Metrics(#[from] prototree_metrics::Error),
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
    /// The device ran out of memory during training.
    #[error("{device} ran out of memory with batch size {batch_size} ({message}); train again with a smaller batch, e.g. --batch-size {suggested_batch_size} (a different batch size cannot continue this run), or free memory on the device and continue with `prototree train --resume RUN`: the last completed epoch is saved")]
    OutOfMemory {
        /// The device, e.g. `cuda:0`.
        device: String,
        /// The batch size in use.
        batch_size: usize,
        /// Half of it (at least 1).
        suggested_batch_size: usize,
        /// The underlying error.
        message: String,
    },
}

/// Result type of the facade.
pub type Result<T> = std::result::Result<T, Error>;
