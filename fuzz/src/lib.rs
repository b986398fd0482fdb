//! What the fuzz targets share: the multi-file input format and a scratch directory.
//!
//! A target that reads a directory (a model directory, a CUB data set) takes one input
//! holding several files, separated by [`SEPARATOR`]; `scripts/fuzz.sh` builds the seed
//! inputs from the fixtures the same way.

use std::path::{Path, PathBuf};

/// Between two files of a multi-file input.
pub const SEPARATOR: &[u8] = b"\n\x00--next-file--\x00\n";

/// The files of a multi-file input, `names.len()` at most (missing ones are absent).
pub fn split_files<'a>(data: &'a [u8], names: &[&'a str]) -> Vec<(&'a str, &'a [u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    for name in names {
        match find(rest, SEPARATOR) {
            Some(i) => {
                out.push((*name, &rest[..i]));
                rest = &rest[i + SEPARATOR.len()..];
            }
            None => {
                out.push((*name, rest));
                return out;
            }
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A scratch directory of this process (in /dev/shm where it exists), emptied.
pub fn scratch(name: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("prototree-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Writes the files of `data` into `dir` (sub-folders created).
pub fn write_files(dir: &Path, data: &[u8], names: &[&str]) {
    for (name, bytes) in split_files(data, names) {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(p, bytes);
    }
}

/// A memory budget far under libFuzzer's `-rss_limit_mb=2048`, so that every size the
/// budget admits fits, and every size it refuses is an error, not an out-of-memory crash.
pub fn set_budget() {
    std::env::set_var(prototree_limits::memory::ENV_VAR, "512M");
}
