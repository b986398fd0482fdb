//! The per-epoch metrics log of a run (`metrics.jsonl`): one JSON [`EpochStats`] per line.

use std::io::Write;
use std::path::{Path, PathBuf};

use prototree_tree::io::write_atomic;
use prototree_tree::EpochStats;

use crate::error::io_err;
use crate::json_lines;
use crate::Result;

/// Name of the per-epoch metrics log in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// A `metrics.jsonl` file.
#[derive(Debug, Clone)]
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// The log at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the log by `history` (a new or resumed run starts from its checkpoint).
    pub fn rewrite(&self, history: &[EpochStats]) -> Result<()> {
        let text = json_lines::text(history, &self.path)?;
        Ok(write_atomic(&self.path, text.as_bytes())?)
    }

    /// The epochs in the log; an empty list when there is no log. Lines that do not read
    /// as an epoch (a line cut by a kill) are an error naming the file and the line.
    pub fn read(&self) -> Result<Vec<EpochStats>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        json_lines::parse(&text, &self.path)
    }

    /// Appends one epoch.
    pub fn append(&self, stats: &EpochStats) -> Result<()> {
        let line = json_lines::line(stats, &self.path)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        writeln!(f, "{line}").map_err(io_err(&self.path))
    }
}
