//! Loading pretrained backbone weights from PyTorch state dicts: `.safetensors`, or
//! `.pth` / `.pt` / `.bin` files of either `torch.save` format, read by
//! [`prototree_torch::read_state_dict`] (no Python, nothing executed).
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

use crate::{BackboneKind, Error, Result};

/// What a weight file contributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsReport {
    /// Tensors loaded into the backbone.
    pub loaded: usize,
    /// Keys of the file that were expected to be unused (classifier, counters).
    pub ignored: Vec<String>,
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

/// Loads the state dict in `path` (read with [`prototree_torch::read_state_dict`]) into the variables of `varmap` whose names start with
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
    let file = prototree_torch::read_state_dict(path)?;
    load_weights_from(varmap, prefix, &file, path, arch)
}

/// [`load_weights`] for the backbone `kind`: the file is read and, for
/// [`BackboneKind::Resnet50Inat`], renamed from BBN's layout ([`crate::bbn`]) first.
pub fn load_pretrained(
    varmap: &VarMap,
    prefix: &str,
    path: &Path,
    kind: BackboneKind,
) -> Result<WeightsReport> {
    let file = prototree_torch::read_state_dict(path)?;
    let file = match kind {
        BackboneKind::Resnet50Inat => crate::bbn::bbn_to_torchvision(file, path)?,
        _ => file,
    };
    load_weights_from(varmap, prefix, &file, path, kind.name())
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
    fn long_lists_are_capped() {
        let items: Vec<String> = (0..20).map(|i| format!("k{i:02}")).collect();
        let s = capped(items);
        assert!(s.starts_with("k00, k01"), "{s}");
        assert!(s.ends_with("… and 8 more"), "{s}");
    }
}
