//! [`read_bounded`]: a whole file, refused before reading when it is over a limit.

use std::io::Read;
use std::path::Path;

use crate::{Error, LimitError, Result};

/// Reads all of `path`, refusing (before reading) a file longer than `max` bytes.
///
/// The length is taken from the file's metadata and enforced again while reading, so a
/// file that grows meanwhile (or a pipe) cannot make the buffer larger than `max`.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let too_long = |n: u64| {
        LimitError::new(
            path.display().to_string(),
            "file length",
            format!("{n} bytes"),
            format!("over the limit of {max} bytes"),
        )
    };
    if len > max {
        return Err(too_long(len).into());
    }
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(io)?;
    if out.len() as u64 > max {
        return Err(too_long(out.len() as u64).into());
    }
    Ok(out)
}

/// [`read_bounded`] of a UTF-8 text file.
pub fn read_bounded_text(path: &Path, max: u64) -> Result<String> {
    let bytes = read_bounded(path, max)?;
    String::from_utf8(bytes).map_err(|_| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_over_the_limit_are_refused_before_reading() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("a.bin");
        std::fs::write(&p, [7u8; 10])?;
        assert_eq!(read_bounded(&p, 10)?, vec![7u8; 10]);
        let e = read_bounded(&p, 9).unwrap_err();
        assert!(matches!(e, Error::Limit(_)), "{e}");
        assert!(
            e.to_string()
                .contains("a.bin: `file length` is 10 bytes, over the limit of 9 bytes"),
            "{e}"
        );
        let e = read_bounded(&dir.path().join("missing"), 9).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        std::fs::write(&p, [0xff, 0xfe])?;
        assert!(read_bounded_text(&p, 10).is_err());
        Ok(())
    }
}
