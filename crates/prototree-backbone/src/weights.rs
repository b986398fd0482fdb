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

use candle_core::{DType, Tensor};
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

/// Reads every tensor of a state-dict file, by name.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    let fail = |reason: String| Error::WeightFile {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    let is_safetensors = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.eq_ignore_ascii_case("safetensors"))
        .unwrap_or(false);
    let tensors: Vec<(String, Tensor)> = if is_safetensors {
        candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .map_err(|e| fail(format!("not a valid safetensors file: {e}")))?
            .into_iter()
            .collect()
    } else {
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
    let strip = |name: &str| -> Option<String> {
        if prefix.is_empty() {
            Some(name.to_string())
        } else {
            name.strip_prefix(prefix)?
                .strip_prefix('.')
                .map(str::to_string)
        }
    };
    let mut wanted: HashMap<String, &candle_core::Var> = HashMap::new();
    for (name, var) in data.iter() {
        if let Some(local) = strip(name) {
            wanted.insert(local, var);
        }
    }
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    for (name, var) in &wanted {
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
    let mut ignored = Vec::new();
    let mut unexpected = Vec::new();
    for name in file.keys() {
        if !wanted.contains_key(name) {
            if expected_extra(name) {
                ignored.push(name.clone());
            } else {
                unexpected.push(name.clone());
            }
        }
    }
    if !missing.is_empty() || !misshaped.is_empty() || !unexpected.is_empty() {
        let mut details = Vec::new();
        if !missing.is_empty() {
            details.push(format!(
                "missing {} keys: {}",
                missing.len(),
                capped(missing)
            ));
        }
        if !unexpected.is_empty() {
            details.push(format!(
                "unexpected {} keys: {}",
                unexpected.len(),
                capped(unexpected)
            ));
        }
        if !misshaped.is_empty() {
            details.push(format!(
                "mis-shaped {} keys: {}",
                misshaped.len(),
                capped(misshaped)
            ));
        }
        return Err(Error::WeightMismatch {
            path: path.to_path_buf(),
            arch: arch.to_string(),
            details: details.join("; "),
        });
    }
    let mut loaded = 0;
    for (name, var) in &wanted {
        if let Some(t) = file.get(name) {
            let t = t.to_dtype(DType::F32)?.to_device(var.device())?;
            var.set(&t.to_dtype(var.dtype())?)?;
            loaded += 1;
        }
    }
    ignored.sort();
    Ok(WeightsReport { loaded, ignored })
}
