//! [`read_state_dict`]: every tensor of a weight file, whatever its format.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::torch_file::{bad, TorchFile};
use crate::{Error, Result};

/// Keys under which training scripts nest the state dict in a checkpoint dict.
const NESTED_KEYS: [&str; 3] = ["state_dict", "model", "model_state_dict"];

/// The containers [`read_state_dict`] tells apart by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    /// An 8-byte little-endian header length, then a JSON header.
    Safetensors,
    /// `torch.save` since PyTorch 1.6: a zip archive holding a pickle.
    TorchZip,
    /// A pickle stream: `torch.save` before PyTorch 1.6 (or
    /// `_use_new_zipfile_serialization=False`), or a plain `pickle.dump`.
    Pickle,
}

/// The container of a file from its first 16 bytes (fewer for a shorter file).
///
/// Zip comes first, then safetensors (whose header length may start with `0x80`, the
/// pickle protocol opcode), then pickle: byte 8 of a zip local header is its compression
/// method and `{` is no pickle opcode, so the three never overlap in practice.
fn sniff(head: &[u8]) -> Option<Container> {
    if head.starts_with(b"PK\x03\x04") {
        Some(Container::TorchZip)
    } else if head.len() > 8 && head[8] == b'{' {
        Some(Container::Safetensors)
    } else if head.first() == Some(&0x80) {
        Some(Container::Pickle)
    } else {
        None
    }
}

fn head(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut buf = [0u8; 16];
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut n = 0;
    // `read` may return fewer bytes than asked for before the end of the file.
    loop {
        match file.read(&mut buf[n..]).map_err(io)? {
            0 => break,
            k => n += k,
        }
        if n == buf.len() {
            break;
        }
    }
    Ok(buf[..n].to_vec())
}

/// Reads every tensor of a state-dict file, by name, onto the CPU.
///
/// The format is recognised by content, not by extension: safetensors, a zip-format
/// `torch.save` file (PyTorch ≥ 1.6, e.g. torchvision's downloads) or a legacy (pre-1.6)
/// `torch.save` stream. For the two torch formats, the top-level object is the state dict,
/// or a dict holding it under `state_dict`, `model` or `model_state_dict`; tensors whose
/// element type candle lacks are left out. A `module.` prefix (DataParallel) is stripped
/// from every name. Nothing in the file is executed (see [`crate::pickle`]).
///
/// Fails with an [`Error`] naming the file and what was wrong: unreadable, neither format,
/// damaged, not a state dict, or without any tensor.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    let tensors = match sniff(&head(path)?) {
        Some(Container::Safetensors) => {
            crate::safetensors_header::check_header(path)?;
            candle_core::safetensors::load(path, &Device::Cpu)
                .map_err(|e| bad(path, format!("not a valid safetensors file: {e}")))?
        }
        Some(Container::TorchZip | Container::Pickle) => read_torch(path)?,
        None => {
            return Err(bad(
                path,
                "neither safetensors nor a PyTorch (torch.save) file",
            ))
        }
    };
    if tensors.is_empty() {
        return Err(bad(
            path,
            "no tensors found (expected a PyTorch state dict)",
        ));
    }
    Ok(tensors
        .into_iter()
        .map(|(k, t)| (k.strip_prefix("module.").unwrap_or(&k).to_string(), t))
        .collect())
}

/// The tensors of a `torch.save` file's state dict, possibly nested (see [`NESTED_KEYS`]).
fn read_torch(path: &Path) -> Result<HashMap<String, Tensor>> {
    let file = TorchFile::open(path)?;
    let root = file.root();
    let g = file.graph();
    let id = NESTED_KEYS
        .iter()
        .find_map(|key| g.dict_get(root, key).filter(|v| g.dict(*v).is_some()))
        .unwrap_or(root);
    let entries = file.state_dict_entries(id)?;
    let (map, _) = file.tensors(&entries)?;
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pickle protocol-2 header and "magic number" long that open a legacy torch file.
    const LEGACY_HEAD: [u8; 14] = [
        0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
    ];

    #[test]
    fn formats_are_sniffed() {
        assert_eq!(sniff(b"PK\x03\x04rest"), Some(Container::TorchZip));
        assert_eq!(sniff(&LEGACY_HEAD), Some(Container::Pickle));
        assert_eq!(
            sniff(b"\x10\0\0\0\0\0\0\0{\"a\":"),
            Some(Container::Safetensors)
        );
        // A header of 128 bytes: the first byte is the pickle protocol opcode.
        assert_eq!(
            sniff(b"\x80\0\0\0\0\0\0\0{\"a\":"),
            Some(Container::Safetensors)
        );
        assert_eq!(sniff(b"junk"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn unreadable_and_foreign_files_are_named() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("missing.pth");
        let err = read_state_dict(&missing).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(err.to_string().contains("missing.pth"), "{err}");
        let junk = dir.path().join("junk.pth");
        std::fs::write(&junk, b"junk")?;
        let err = read_state_dict(&junk).unwrap_err();
        assert!(err.to_string().contains("junk.pth"), "{err}");
        assert!(err.to_string().contains("neither safetensors"), "{err}");
        Ok(())
    }
}
