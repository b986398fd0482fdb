//! Errors of training: the model's own, plus numerical failures, interrupts and
//! run-directory policy.

use std::path::PathBuf;

/// Everything training can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model, data-source or file-format problem.
    #[error(transparent)]
    Tree(#[from] prototree_tree::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An invalid schedule.
    #[error("invalid configuration: {0}")]
    Config(#[from] prototree_tree::ConfigError),
    /// Training produced a non-finite loss.
    #[error("non-finite loss ({loss}) at epoch {epoch}, batch {batch}: lower the learning rates or check the input data")]
    NonFiniteLoss {
        /// 1-based epoch.
        epoch: usize,
        /// 0-based batch within the epoch.
        batch: usize,
        /// The loss value.
        loss: f32,
    },
    /// Training produced a non-finite gradient.
    #[error("non-finite gradient of `{parameter}` (parameter group {group}) at epoch {epoch}, batch {batch}: lower the learning rates or check the input data")]
    NonFiniteGradient {
        /// 1-based epoch.
        epoch: usize,
        /// 0-based batch within the epoch.
        batch: usize,
        /// The parameter group (`backbone`, `block`, `prototypes`).
        group: &'static str,
        /// The parameter.
        parameter: String,
    },
    /// An epoch left a weight or a running statistic non-finite (its checkpoint is not
    /// written, so the last checkpoint stays the previous epoch's).
    #[error("non-finite value in `{parameter}` ({group}) after epoch {epoch}: lower the learning rates or check the input data; the last checkpoint is of epoch {previous}")]
    NonFiniteWeights {
        /// 1-based epoch.
        epoch: usize,
        /// The epoch of the last checkpoint.
        previous: usize,
        /// The parameter group, or `running statistic` for a buffer.
        group: &'static str,
        /// The parameter or buffer.
        parameter: String,
    },
    /// A data source produced no batches.
    #[error("the {0} data produced no batches")]
    EmptyData(&'static str),
    /// Training was interrupted through the [`crate::Interrupter`].
    #[error("training interrupted")]
    Interrupted,
    /// A new run was asked for in a directory that already holds one.
    #[error("{}: already holds a training run; continue it with --resume {} or replace it with --overwrite", .0.display(), .0.display())]
    RunExists(PathBuf),
    /// A run was to be resumed from a directory without a checkpoint.
    #[error("{}: no checkpoint to resume from ({} is missing)", .run.display(), .checkpoint.display())]
    NoCheckpoint {
        /// The run directory.
        run: PathBuf,
        /// The checkpoint that is missing.
        checkpoint: PathBuf,
    },
    /// The run directory is a file.
    #[error("{}: exists and is a file, expected a directory", .0.display())]
    NotADirectory(PathBuf),
    /// A checkpoint belongs to another run configuration or other classes.
    #[error("{}: {reason}", .dir.display())]
    OtherRun {
        /// The checkpoint directory.
        dir: PathBuf,
        /// What differs.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Maps an I/O error on `path` to [`Error::Io`].
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The value of a scalar `loss`, or [`Error::NonFiniteLoss`] naming the epoch and batch.
pub(crate) fn finite_loss(loss: &candle_core::Tensor, epoch: usize, batch: usize) -> Result<f32> {
    let value = loss.to_scalar::<f32>()?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Error::NonFiniteLoss {
            epoch,
            batch,
            loss: value,
        })
    }
}
