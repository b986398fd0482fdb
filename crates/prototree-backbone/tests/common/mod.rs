//! Fixture helpers shared by the parity tests (fixtures from
//! fixtures/backbones/make_fixtures.py).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use prototree_backbone::{Backbone, ImageNetClassifier};

/// Path of a file in fixtures/backbones.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/backbones")
        .join(name)
}

/// The state-dict names and shapes the key fixture `file` lists, less the classifier's
/// (names starting with `classifier`, e.g. `"fc."`) and BatchNorm's `num_batches_tracked`.
pub fn backbone_keys(file: &str, classifier: &str) -> anyhow::Result<BTreeMap<String, Vec<usize>>> {
    let all: BTreeMap<String, Vec<usize>> =
        serde_json::from_str(&std::fs::read_to_string(fixture(file))?)?;
    Ok(all
        .into_iter()
        .filter(|(k, _)| !k.starts_with(classifier) && !k.ends_with("num_batches_tracked"))
        .collect())
}

/// The names and shapes of every variable in `varmap`.
pub fn var_shapes(varmap: &VarMap) -> anyhow::Result<BTreeMap<String, Vec<usize>>> {
    Ok(varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect())
}

/// Largest absolute element-wise difference.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
    anyhow::ensure!(
        a.dims() == b.dims(),
        "shapes {:?} vs {:?}",
        a.dims(),
        b.dims()
    );
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

/// A parity fixture: every tensor, and its state dict (`weights.*`) written as its own
/// safetensors file, as a user would have it.
pub struct Fixture {
    pub all: HashMap<String, Tensor>,
    pub weights: HashMap<String, Tensor>,
    pub weights_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub fn load(name: &str) -> anyhow::Result<Self> {
        let all = candle_core::safetensors::load(fixture(name), &Device::Cpu)?;
        let weights: HashMap<String, Tensor> = all
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("weights.")
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect();
        let dir = tempfile::tempdir()?;
        let weights_path = dir.path().join("weights.safetensors");
        candle_core::safetensors::save(&weights, &weights_path)?;
        Ok(Self {
            all,
            weights,
            weights_path,
            _dir: dir,
        })
    }

    pub fn get(&self, key: &str) -> anyhow::Result<&Tensor> {
        self.all
            .get(key)
            .ok_or_else(|| anyhow::anyhow!("fixture has no tensor `{key}`"))
    }

    /// Largest difference between the BatchNorm running statistics in `varmap` (under
    /// `prefix`) and PyTorch's after its train-mode pass.
    pub fn running_stats_diff(&self, varmap: &VarMap, prefix: &str) -> anyhow::Result<f32> {
        let data = varmap.data().lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let mut worst = 0f32;
        let mut n = 0;
        for (k, want) in &self.all {
            let Some(name) = k.strip_prefix("running_after_train.") else {
                continue;
            };
            let full = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            };
            let got = data
                .get(&full)
                .ok_or_else(|| anyhow::anyhow!("no variable {full}"))?;
            worst = worst.max(max_abs_diff(got.as_tensor(), want)?);
            n += 1;
        }
        anyhow::ensure!(n > 0, "no running statistics in the fixture");
        Ok(worst)
    }

    /// The parity checks every backbone fixture holds, in this order: `net`'s eval-mode
    /// features of `input` against PyTorch's (`features_eval`, and its float64 run
    /// `features_eval_f64`) within 1e-4; the classifier on `net` with the fixture's
    /// `weights.{head}.weight` / `.bias` against `logits_eval` within 1e-4; the train-mode
    /// features (`features_train`, `_f64`) within 1e-4; then the BatchNorm running
    /// statistics that pass left in `varmap` (under `prefix`) within 1e-5. Each difference
    /// is printed after `label`.
    pub fn assert_matches_pytorch<B: Backbone + Clone + 'static>(
        &self,
        label: &str,
        net: &B,
        (varmap, prefix): (&VarMap, &str),
        head: &str,
    ) -> anyhow::Result<()> {
        let x = self.get("input")?;
        let eval = net.features(x, false)?;
        let d = max_abs_diff(&eval, self.get("features_eval")?)?;
        let d64 = max_abs_diff(&eval, self.get("features_eval_f64")?)?;
        println!("{label}: eval max abs diff {d:.1e} (vs float64: {d64:.1e})");
        assert!(d <= 1e-4 && d64 <= 1e-4, "{label}: eval max abs diff {d}");

        // The classifier on the same (shared) variables, before the train pass moves the
        // running statistics.
        let clf = ImageNetClassifier::new(
            Box::new(net.clone()),
            self.get(&format!("weights.{head}.weight"))?.clone(),
            self.get(&format!("weights.{head}.bias"))?.clone(),
        )?;
        let d = max_abs_diff(&clf.forward(x)?, self.get("logits_eval")?)?;
        println!("{label}: logits max abs diff {d:.1e}");
        assert!(d <= 1e-4, "{label}: logits max abs diff {d}");

        let train = net.features(x, true)?;
        let d = max_abs_diff(&train, self.get("features_train")?)?;
        let d64 = max_abs_diff(&train, self.get("features_train_f64")?)?;
        println!("{label}: train max abs diff {d:.1e} (vs float64: {d64:.1e})");
        assert!(d <= 1e-4 && d64 <= 1e-4, "{label}: train max abs diff {d}");
        let d = self.running_stats_diff(varmap, prefix)?;
        println!("{label}: running statistics after the train pass: max abs diff {d:.1e}");
        assert!(d <= 1e-5, "{label}: running stats max abs diff {d}");
        Ok(())
    }
}
