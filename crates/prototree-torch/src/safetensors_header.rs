//! The header of a safetensors file, checked before any tensor is read: every shape ×
//! element size must equal its byte range, every range must lie inside the file, and the
//! file must fit the memory budget. A hostile shape gives an error naming the tensor,
//! not an allocation of what the shape claims.

use std::io::Read;
use std::path::Path;

use prototree_limits::{maxima, memory};

use crate::torch_file::{bad, limit};
use crate::{Error, Result};

/// The safetensors reader's own limit on the header length.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Bits per element of a safetensors dtype name.
fn dtype_bits(name: &str) -> Option<u64> {
    Some(match name {
        "F64" | "I64" | "U64" | "C64" => 64,
        "F32" | "I32" | "U32" => 32,
        "F16" | "BF16" | "I16" | "U16" => 16,
        "I8" | "U8" | "BOOL" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "F6_E2M3" | "F6_E3M2" => 6,
        "F4" => 4,
        _ => return None,
    })
}

/// Checks the header of the safetensors file at `path` (see the module docs).
pub fn check_header(path: &Path) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    memory::check("", "file length", len).map_err(|e| limit(path, e))?;
    let mut n = [0u8; 8];
    file.read_exact(&mut n)
        .map_err(|_| bad(path, "truncated: shorter than the 8-byte header length"))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER_BYTES || n > len - 8 {
        return Err(bad(
            path,
            format!(
                "`header length` is {n}, over the limit of {} (the file holds {} bytes after it)",
                MAX_HEADER_BYTES.min(len - 8),
                len - 8
            ),
        ));
    }
    let mut header = Vec::with_capacity(n as usize);
    file.take(n).read_to_end(&mut header).map_err(io)?;
    let data_len = len - 8 - n;
    let value: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| bad(path, format!("header is not valid JSON: {e}")))?;
    let entries = value
        .as_object()
        .ok_or_else(|| bad(path, "header is not a JSON object"))?;
    for (name, info) in entries {
        if name == "__metadata__" {
            continue;
        }
        check_entry(path, name, info, data_len)?;
    }
    Ok(())
}

/// One tensor's dtype, shape and data offsets.
fn check_entry(path: &Path, name: &str, info: &serde_json::Value, data_len: u64) -> Result<()> {
    let field = |f: &str, what: &str| bad(path, format!("`{name}.{f}` {what}"));
    let dtype = info["dtype"].as_str().unwrap_or_default();
    let bits = dtype_bits(dtype).ok_or_else(|| field("dtype", "is not a known element type"))?;
    let shape: Vec<u64> = info["shape"]
        .as_array()
        .ok_or_else(|| field("shape", "is not a list"))?
        .iter()
        .map(serde_json::Value::as_u64)
        .collect::<Option<_>>()
        .ok_or_else(|| field("shape", "holds a value that is not a non-negative integer"))?;
    prototree_limits::check::at_most(
        "",
        &format!("{name}.shape rank"),
        shape.len() as u64,
        maxima::MAX_TENSOR_RANK,
    )
    .map_err(|e| limit(path, e))?;
    let offsets: Vec<u64> = info["data_offsets"]
        .as_array()
        .and_then(|a| a.iter().map(serde_json::Value::as_u64).collect())
        .filter(|o: &Vec<u64>| o.len() == 2)
        .ok_or_else(|| field("data_offsets", "is not a pair of byte offsets"))?;
    let (start, end) = (offsets[0], offsets[1]);
    let bytes = shape
        .iter()
        .try_fold(bits, |acc, d| acc.checked_mul(*d))
        .map(|b| b.div_ceil(8))
        .filter(|b| *b <= maxima::MAX_TENSOR_BYTES);
    let Some(bytes) = bytes else {
        return Err(field(
            "shape",
            &format!(
                "is {shape:?}: more than the limit of {} bytes of {dtype}",
                maxima::MAX_TENSOR_BYTES
            ),
        ));
    };
    if end < start || end > data_len || end - start != bytes {
        return Err(field(
            "shape",
            &format!(
                "is {shape:?} ({bytes} bytes of {dtype}), but its data_offsets [{start}, {end}] hold {} bytes of the {data_len} in the file",
                end.saturating_sub(start)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: usize) -> anyhow::Result<(tempfile::TempDir, std::path::PathBuf)> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("t.safetensors");
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(vec![0u8; data]);
        std::fs::write(&p, bytes)?;
        Ok((dir, p))
    }

    #[test]
    fn shapes_are_checked_against_byte_ranges() -> anyhow::Result<()> {
        let ok =
            r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"__metadata__":{"a":"b"}}"#;
        let (_d, p) = file(ok, 16)?;
        check_header(&p)?;
        for (header, needle) in [
            (
                r#"{"w":{"dtype":"F32","shape":[2147483648,2],"data_offsets":[0,16]}}"#,
                "`w.shape` is [2147483648, 2]",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[9223372036854775807,4],"data_offsets":[0,16]}}"#,
                "more than the limit",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,16]}}"#,
                "not a non-negative integer",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,1600]}}"#,
                "data_offsets [0, 1600]",
            ),
            (
                r#"{"w":{"dtype":"Q9","shape":[2,2],"data_offsets":[0,16]}}"#,
                "`w.dtype`",
            ),
        ] {
            let (_d, p) = file(header, 16)?;
            let e = check_header(&p).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
            assert!(e.contains("t.safetensors"), "{e}");
        }
        // A header length past the end of the file.
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("t.safetensors");
        std::fs::write(&p, u64::MAX.to_le_bytes())?;
        let e = check_header(&p).unwrap_err().to_string();
        assert!(e.contains("`header length` is 18446744073709551615"), "{e}");
        Ok(())
    }
}
