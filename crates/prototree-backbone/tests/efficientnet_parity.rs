//! EfficientNet-Lite parity with the PyPI package `efficientnet-lite-pytorch` (fixtures
//! from fixtures/backbones/make_fixtures.py): a narrow random-weight model's features in
//! eval and train mode, and the package's state-dict names and shapes for Lite0 … Lite4.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use prototree_backbone::{load_weights, Backbone, BackboneKind, EfficientNetLite};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/backbones")
        .join(name)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

#[test]
fn narrow_lite_matches_the_pytorch_package() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let all =
        candle_core::safetensors::load(fixture("efficientnet_lite_narrow.safetensors"), &dev)?;
    let dir = tempfile::tempdir()?;
    let weights: HashMap<String, Tensor> = all
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("weights.")
                .map(|n| (n.to_string(), v.clone()))
        })
        .collect();
    let path = dir.path().join("w.safetensors");
    candle_core::safetensors::save(&weights, &path)?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let net = EfficientNetLite::with_multipliers(BackboneKind::EfficientnetLite0, 0.25, 0.5, vb)?;
    let report = load_weights(&varmap, "", &path, "narrow efficientnet-lite")?;
    assert!(report.ignored.iter().any(|k| k.starts_with("_fc.")));
    for (train, key) in [(false, "features_eval"), (true, "features_train")] {
        let got = net.features(&all["input"], train)?;
        let d = max_abs_diff(&got, &all[key])?;
        let scale = all[key]
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?
            .max(1.0);
        println!("efficientnet-lite narrow {key}: max abs diff {d:e} (values up to {scale})");
        // Train mode normalises with batch statistics of 8 values per channel in the
        // deepest layers, which amplifies float32 rounding: the bound is relative there.
        let bound = if train { 1e-4 * scale } else { 1e-4 };
        assert!(d <= bound, "{key}: max abs diff {d}");
    }
    Ok(())
}

#[test]
fn lite_models_have_the_package_names_and_shapes() -> anyhow::Result<()> {
    for (i, kind) in [
        BackboneKind::EfficientnetLite0,
        BackboneKind::EfficientnetLite1,
        BackboneKind::EfficientnetLite2,
        BackboneKind::EfficientnetLite3,
        BackboneKind::EfficientnetLite4,
    ]
    .into_iter()
    .enumerate()
    {
        let want: BTreeMap<String, Vec<usize>> = serde_json::from_str(&std::fs::read_to_string(
            fixture(&format!("efficientnet_lite{i}_keys.json")),
        )?)?;
        let want: BTreeMap<String, Vec<usize>> = want
            .into_iter()
            .filter(|(k, _)| !k.starts_with("_fc.") && !k.ends_with("num_batches_tracked"))
            .collect();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let net = EfficientNetLite::new(kind, vb)?;
        let got: BTreeMap<String, Vec<usize>> = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .iter()
            .map(|(k, v)| (k.clone(), v.dims().to_vec()))
            .collect();
        assert_eq!(got, want, "{kind}");
        assert_eq!(net.out_channels(), 1280);
        // The feature map is stride 32.
        if i == 0 {
            let x = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu)?;
            assert_eq!(net.features(&x, false)?.dims(), &[1, 1280, 2, 2]);
        }
    }
    Ok(())
}
