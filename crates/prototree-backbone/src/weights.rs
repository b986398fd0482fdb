//! Loading pretrained backbone weights from PyTorch state dicts: `.safetensors`, or
//! `.pth` / `.pt` / `.bin` pickles (read with candle's PyTorch support, no Python).
//!
//! Names are PyTorch's (`conv1.weight`, `layer1.0.bn1.running_mean`, …). A `module.`
//! prefix (DataParallel) is stripped; a state dict nested under `state_dict` or `model`
//! is found. The classifier (`fc.*`, `classifier.*`) and `num_batches_tracked` counters
//! are expected extras. Anything else that does not fit — missing, unexpected or
//! mis-shaped keys — is an error listing them.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;

use crate::{Error, Result};

/// What a weight file contributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsReport {
    /// Tensors loaded into the backbone.
    pub loaded: usize,
    /// Keys of the file that were expected to be unused (classifier, counters).
    pub ignored: Vec<String>,
}

/// The container formats [`read_state_dict`] tells apart by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Safetensors,
    /// `torch.save` since PyTorch 1.6: a zip archive holding a pickle.
    TorchZip,
    /// `torch.save` before PyTorch 1.6 (or `_use_new_zipfile_serialization=False`).
    TorchLegacy,
}

/// The pickle protocol-2 header and "magic number" long that open a legacy torch file.
const LEGACY_MAGIC: [u8; 14] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

fn sniff(head: &[u8]) -> Option<Format> {
    if head.starts_with(b"PK\x03\x04") {
        Some(Format::TorchZip)
    } else if head.starts_with(&LEGACY_MAGIC) {
        Some(Format::TorchLegacy)
    } else if head.len() > 8 && head[8] == b'{' {
        // safetensors: an 8-byte little-endian header length, then a JSON header.
        Some(Format::Safetensors)
    } else {
        None
    }
}

/// Reads every tensor of a state-dict file, by name.
///
/// The format is recognised by content, not by extension: safetensors, or a zip-format
/// `torch.save` file (PyTorch ≥ 1.6, e.g. torchvision's downloads) whose top-level object
/// is the state dict or holds it under `state_dict`, `model` or `model_state_dict`. A
/// `module.` prefix is stripped from every name. Legacy-format torch files (before 1.6)
/// are reported as such: the `prototree` crate's weight loading reads them with
/// `prototree_reference::read_state_dict`, or re-save them with a current PyTorch.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    let fail = |reason: String| Error::WeightFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| {
            use std::io::Read;
            f.read(&mut head)
        })
        .map_err(|e| fail(e.to_string()))?;
    let tensors: Vec<(String, Tensor)> = match sniff(&head[..n]) {
        Some(Format::Safetensors) => {
            candle_core::safetensors::load(path, &candle_core::Device::Cpu)
                .map_err(|e| fail(format!("not a valid safetensors file: {e}")))?
                .into_iter()
                .collect()
        }
        Some(Format::TorchZip) => {
            let mut found = Vec::new();
            let mut last_err = String::new();
            for key in [
                None,
                Some("state_dict"),
                Some("model"),
                Some("model_state_dict"),
            ] {
                match candle_core::pickle::read_all_with_key(path, key) {
                    Ok(t) if !t.is_empty() => {
                        found = t;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => last_err = e.to_string(),
                }
            }
            if found.is_empty() {
                return Err(fail(if last_err.is_empty() {
                    "no tensors found (expected a PyTorch state dict)".into()
                } else {
                    format!("not a PyTorch state dict: {last_err}")
                }));
            }
            found
        }
        Some(Format::TorchLegacy) => {
            return Err(fail(
                "legacy (PyTorch < 1.6) torch.save format, which this reader does not parse; \
                 load it through the `prototree` crate (or `prototree_reference::read_state_dict`), \
                 or re-save it with `torch.save(state_dict, path)` in PyTorch >= 1.6"
                    .into(),
            ))
        }
        None => {
            return Err(fail(
                "neither safetensors nor a PyTorch (torch.save) file".into(),
            ))
        }
    };
    Ok(tensors
        .into_iter()
        .map(|(k, t)| (k.strip_prefix("module.").unwrap_or(&k).to_string(), t))
        .collect())
}

fn expected_extra(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
        || name.starts_with("fc.")
        || name.starts_with("classifier.")
        || name.starts_with("_fc.")
}

fn capped(mut items: Vec<String>) -> String {
    items.sort();
    const MAX: usize = 12;
    let n = items.len();
    if n > MAX {
        items.truncate(MAX);
        items.push(format!("… and {} more", n - MAX));
    }
    items.join(", ")
}

/// Loads the state dict in `path` into the variables of `varmap` whose names start with
/// `prefix.` (the backbone's variables; `prefix` may be empty), for architecture `arch`.
///
/// Fails with [`Error::WeightMismatch`] listing missing, unexpected and mis-shaped keys
/// (the classifier and `num_batches_tracked` are expected extras); nothing is loaded then.
///
/// ```
/// use std::collections::HashMap;
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::{VarBuilder, VarMap};
/// use prototree_backbone::{build_backbone, load_weights, BackboneKind, Error};
///
/// let varmap = VarMap::new();
/// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let _net = build_backbone(BackboneKind::Resnet18, vb.pp("_net"))?;
/// // A file with only the stem convolution, of the wrong size.
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("w.safetensors");
/// let stem = Tensor::zeros((64, 3, 3, 3), DType::F32, &Device::Cpu)?;
/// candle_core::safetensors::save(&HashMap::from([("conv1.weight", stem)]), &path)?;
/// let err = load_weights(&varmap, "_net", &path, "resnet18").unwrap_err();
/// assert!(matches!(err, Error::WeightMismatch { .. }));
/// assert!(err.to_string().contains("mis-shaped 1 keys: conv1.weight"));
/// # Ok::<(), prototree_backbone::Error>(())
/// ```
pub fn load_weights(
    varmap: &VarMap,
    prefix: &str,
    path: &Path,
    arch: &str,
) -> Result<WeightsReport> {
    let file = read_state_dict(path)?;
    load_weights_from(varmap, prefix, &file, path, arch)
}

/// [`load_weights`] from tensors already read (e.g. by another reader); `path` names the
/// source in errors.
pub fn load_weights_from(
    varmap: &VarMap,
    prefix: &str,
    file: &HashMap<String, Tensor>,
    path: &Path,
    arch: &str,
) -> Result<WeightsReport> {
    let data = varmap.data().lock().map_err(|_| Error::WeightFile {
        path: path.to_path_buf(),
        reason: "parameter map lock poisoned".into(),
    })?;
    let wanted = vars_under(&data, prefix);
    let check = KeyCheck::of(&wanted, file);
    if let Some(details) = check.mismatch() {
        return Err(Error::WeightMismatch {
            path: path.to_path_buf(),
            arch: arch.to_string(),
            details,
        });
    }
    let loaded = copy_into(&wanted, file)?;
    Ok(WeightsReport {
        loaded,
        ignored: check.ignored,
    })
}

/// The variables of `data` under `prefix` (all of them when it is empty), by their names
/// below it: the names a state dict of that module uses.
fn vars_under<'a>(data: &'a HashMap<String, Var>, prefix: &str) -> HashMap<String, &'a Var> {
    data.iter()
        .filter_map(|(name, var)| {
            let local = if prefix.is_empty() {
                Some(name.as_str())
            } else {
                name.strip_prefix(prefix)?.strip_prefix('.')
            };
            local.map(|l| (l.to_string(), var))
        })
        .collect()
}

/// How a weight file's keys compare with the model's variables.
struct KeyCheck {
    /// Variables the file lacks (BatchNorm's `num_batches_tracked` may be absent).
    missing: Vec<String>,
    /// Keys of the file whose shape differs from the variable's, with both shapes.
    misshaped: Vec<String>,
    /// Keys of the file the model has no variable for and does not expect.
    unexpected: Vec<String>,
    /// Keys of the file the model has no variable for but expects (a classifier), sorted.
    ignored: Vec<String>,
}

impl KeyCheck {
    /// The comparison of `file`'s keys with the variables `wanted`.
    fn of(wanted: &HashMap<String, &Var>, file: &HashMap<String, Tensor>) -> Self {
        let mut missing = Vec::new();
        let mut misshaped = Vec::new();
        for (name, var) in wanted {
            match file.get(name) {
                None if name.ends_with("num_batches_tracked") => {}
                None => missing.push(name.clone()),
                Some(t) if t.dims() != var.dims() => misshaped.push(format!(
                    "{name} (file {:?}, model {:?})",
                    t.dims(),
                    var.dims()
                )),
                Some(_) => {}
            }
        }
        let (mut ignored, unexpected): (Vec<String>, Vec<String>) = file
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .partition(|name| expected_extra(name));
        ignored.sort();
        Self {
            missing,
            misshaped,
            unexpected,
            ignored,
        }
    }

    /// What does not fit, as one line (`None` when the file fits the model).
    fn mismatch(&self) -> Option<String> {
        let details: Vec<String> = [
            ("missing", &self.missing),
            ("unexpected", &self.unexpected),
            ("mis-shaped", &self.misshaped),
        ]
        .into_iter()
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(what, keys)| format!("{what} {} keys: {}", keys.len(), capped(keys.clone())))
        .collect();
        (!details.is_empty()).then(|| details.join("; "))
    }
}

/// Copies every tensor of `file` that has a variable in `wanted` into it (through f32, to
/// the variable's device and dtype); how many were copied.
fn copy_into(wanted: &HashMap<String, &Var>, file: &HashMap<String, Tensor>) -> Result<usize> {
    let mut loaded = 0;
    for (name, var) in wanted {
        if let Some(t) = file.get(name) {
            let t = t.to_dtype(DType::F32)?.to_device(var.device())?;
            var.set(&t.to_dtype(var.dtype())?)?;
            loaded += 1;
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_sniffed() {
        assert_eq!(sniff(b"PK\x03\x04rest"), Some(Format::TorchZip));
        assert_eq!(sniff(&LEGACY_MAGIC), Some(Format::TorchLegacy));
        assert_eq!(
            sniff(b"\x10\0\0\0\0\0\0\0{\"a\":"),
            Some(Format::Safetensors)
        );
        assert_eq!(sniff(b"junk"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn long_lists_are_capped() {
        let items: Vec<String> = (0..20).map(|i| format!("k{i:02}")).collect();
        let s = capped(items);
        assert!(s.starts_with("k00, k01"), "{s}");
        assert!(s.ends_with("… and 8 more"), "{s}");
    }
}
