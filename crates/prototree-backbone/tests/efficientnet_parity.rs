//! EfficientNet-Lite parity with the PyPI package `efficientnet-lite-pytorch` (fixtures
//! from fixtures/backbones/make_fixtures.py): a narrow random-weight model's features in
//! eval and train mode (also at a size with asymmetric "SAME" padding), BatchNorm running
//! statistics after a train-mode pass, classifier logits, and the package's state-dict
//! names and shapes for Lite0 … Lite4.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::{backbone_keys, max_abs_diff, var_shapes, Fixture};
use prototree_backbone::{load_weights, Backbone, BackboneKind, EfficientNetLite};

#[test]
fn narrow_lite_matches_the_pytorch_package() -> anyhow::Result<()> {
    let fx = Fixture::load("efficientnet_lite_narrow.safetensors")?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = EfficientNetLite::with_multipliers(BackboneKind::EfficientnetLite0, 0.25, 0.5, vb)?;
    let report = load_weights(&varmap, "", &fx.weights_path, "narrow efficientnet-lite")?;
    assert_eq!(report.ignored, vec!["_fc.bias", "_fc.weight"]);
    assert_eq!(report.loaded, fx.weights.len() - 2);
    // 72 px: odd inputs to stride-2 layers, so "SAME" pads one more row/column after.
    let odd = net.features(fx.get("input_odd")?, false)?;
    let d = max_abs_diff(&odd, fx.get("features_eval_odd")?)?;
    println!("efficientnet-lite narrow: eval (72 px) max abs diff {d:.1e}");
    assert!(d <= 1e-4, "eval (72 px) max abs diff {d}");
    let label = "efficientnet-lite narrow";
    fx.assert_matches_pytorch(label, &net, (&varmap, ""), "_fc")
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
        let want = backbone_keys(&format!("efficientnet_lite{i}_keys.json"), "_fc.")?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let net = EfficientNetLite::new(kind, vb)?;
        assert_eq!(var_shapes(&varmap)?, want, "{kind}");
        assert_eq!(net.out_channels(), 1280);
        // The feature map is stride 32.
        if i == 0 {
            let x = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu)?;
            assert_eq!(net.features(&x, false)?.dims(), &[1, 1280, 2, 2]);
        }
    }
    Ok(())
}
