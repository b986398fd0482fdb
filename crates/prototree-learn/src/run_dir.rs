//! The run directory: final model, metrics log and `checkpoints/{last,best}`, opened for a
//! new run, to resume one, or to replace one. The library never deletes a run it was not
//! told to replace: a new run in a directory that holds one is [`Error::RunExists`].

use std::path::{Path, PathBuf};

use crate::checkpoint::checkpoint_exists;
use crate::error::io_err;
use crate::metrics_log::{MetricsLog, METRICS_FILE};
use crate::{Error, Result};

/// Directory of the checkpoints inside a run directory.
pub const CHECKPOINTS_DIR: &str = "checkpoints";

/// The latest checkpoint of the run in `root` (`checkpoints/last`).
pub fn last_checkpoint_dir(root: &Path) -> PathBuf {
    root.join(CHECKPOINTS_DIR).join("last")
}

/// The best checkpoint of the run in `root` (`checkpoints/best`: highest test accuracy
/// when evaluated, else training accuracy).
pub fn best_checkpoint_dir(root: &Path) -> PathBuf {
    root.join(CHECKPOINTS_DIR).join("best")
}

/// How to open a run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunMode {
    /// A new run: refused when the directory already holds one.
    #[default]
    New,
    /// Continue the run from its last checkpoint: refused when there is none.
    Resume,
    /// A new run replacing the one in the directory (its checkpoints and warm-up log are
    /// deleted).
    Overwrite,
}

/// An opened run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
    mode: RunMode,
}

impl RunDir {
    /// Opens `root` as `mode` says, creating it for a new run.
    pub fn open(root: &Path, mode: RunMode) -> Result<Self> {
        if root.is_file() {
            return Err(Error::NotADirectory(root.to_path_buf()));
        }
        let dir = Self {
            root: root.to_path_buf(),
            mode,
        };
        let last = dir.last_checkpoint();
        let holds_run = last.exists() || checkpoint_exists(&last);
        match mode {
            RunMode::New if holds_run => return Err(Error::RunExists(dir.root)),
            RunMode::Resume if !checkpoint_exists(&last) => {
                return Err(Error::NoCheckpoint {
                    run: dir.root,
                    checkpoint: last,
                })
            }
            RunMode::Overwrite => {
                for d in [dir.last_checkpoint(), dir.best_checkpoint()] {
                    if d.exists() {
                        std::fs::remove_dir_all(&d).map_err(io_err(&d))?;
                    }
                }
                let warmup = dir.root.join(crate::warmup::WARMUP_FILE);
                if warmup.exists() {
                    std::fs::remove_file(&warmup).map_err(io_err(&warmup))?;
                }
            }
            _ => {}
        }
        std::fs::create_dir_all(&dir.root).map_err(io_err(&dir.root))?;
        Ok(dir)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How it was opened.
    pub fn mode(&self) -> RunMode {
        self.mode
    }

    /// The latest checkpoint ([`last_checkpoint_dir`]).
    pub fn last_checkpoint(&self) -> PathBuf {
        last_checkpoint_dir(&self.root)
    }

    /// The best checkpoint ([`best_checkpoint_dir`]).
    pub fn best_checkpoint(&self) -> PathBuf {
        best_checkpoint_dir(&self.root)
    }

    /// The per-epoch metrics log (`metrics.jsonl`).
    pub fn metrics(&self) -> MetricsLog {
        MetricsLog::new(self.root.join(METRICS_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_runs_never_replace_old_ones_unless_told() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("run");
        let err = RunDir::open(&root, RunMode::Resume).unwrap_err();
        assert!(matches!(err, Error::NoCheckpoint { .. }), "{err}");
        let dir = RunDir::open(&root, RunMode::New)?;
        std::fs::create_dir_all(dir.last_checkpoint())?;
        std::fs::write(dir.last_checkpoint().join("train_state.bin"), b"x")?;
        let err = RunDir::open(&root, RunMode::New).unwrap_err();
        assert!(err.to_string().contains("--overwrite"), "{err}");
        assert!(dir.last_checkpoint().exists());
        RunDir::open(&root, RunMode::Resume)?;
        std::fs::write(root.join(crate::warmup::WARMUP_FILE), b"")?;
        RunDir::open(&root, RunMode::Overwrite)?;
        assert!(!dir.last_checkpoint().exists());
        assert!(!root.join(crate::warmup::WARMUP_FILE).exists());
        std::fs::write(tmp.path().join("file"), b"")?;
        let err = RunDir::open(&tmp.path().join("file"), RunMode::New).unwrap_err();
        assert!(matches!(err, Error::NotADirectory(_)), "{err}");
        Ok(())
    }
}
