//! JSON Lines, the format of the run directory's logs (`metrics.jsonl`, `warmup.jsonl`):
//! one JSON object per line. Reading the file (and its bounds) is the caller's.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// `item` as one JSON line (without the newline); `path` names the file in errors.
pub(crate) fn line<T: Serialize>(item: &T, path: &Path) -> Result<String> {
    serde_json::to_string(item).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}

/// `items` as JSON Lines text, each line ending in a newline.
pub(crate) fn text<T: Serialize>(items: &[T], path: &Path) -> Result<String> {
    let mut out = String::new();
    for item in items {
        out.push_str(&line(item, path)?);
        out.push('\n');
    }
    Ok(out)
}

/// The items of JSON Lines `text` read from `path`, blank lines skipped; a line that does
/// not read as an item is an error naming the file and the line.
pub(crate) fn parse<T: DeserializeOwned>(text: &str, path: &Path) -> Result<Vec<T>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("line {}: {e}", i + 1),
                ),
            })
        })
        .collect()
}
