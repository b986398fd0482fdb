//! ResNet parity with torchvision (fixtures from fixtures/backbones/make_fixtures.py):
//! feature maps of small ResNets built from torchvision's own blocks, in eval and train
//! mode, BatchNorm running statistics after a train-mode pass, classifier logits, and
//! torchvision's full state-dict names and shapes for ResNet-18 … 152.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use common::{backbone_keys, fixture, max_abs_diff, var_shapes, Fixture};
use prototree_backbone::{load_weights, Backbone, BackboneKind, BlockKind, Error, ResNet};

fn check_small(file: &str, block: BlockKind, counts: [usize; 4]) -> anyhow::Result<()> {
    let fx = Fixture::load(file)?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = ResNet::with_blocks(BackboneKind::Resnet18, block, counts, 8, vb.pp("_net"))?;
    let report = load_weights(&varmap, "_net", &fx.weights_path, "small resnet")?;
    // Everything but the classifier (fc.weight, fc.bias) went into the backbone.
    assert_eq!(report.loaded, fx.weights.len() - 2);
    assert_eq!(report.ignored, vec!["fc.bias", "fc.weight"]);
    fx.assert_matches_pytorch(file, &net, (&varmap, "_net"), "fc")
}

#[test]
fn basic_block_resnet_matches_torchvision() -> anyhow::Result<()> {
    check_small("resnet_basic.safetensors", BlockKind::Basic, [2, 1, 1, 1])
}

#[test]
fn bottleneck_resnet_matches_torchvision() -> anyhow::Result<()> {
    check_small(
        "resnet_bottleneck.safetensors",
        BlockKind::Bottleneck,
        [1, 2, 1, 1],
    )
}

#[test]
fn full_resnets_have_torchvision_names_and_shapes() -> anyhow::Result<()> {
    for (kind, file, channels, last) in [
        (
            BackboneKind::Resnet18,
            "resnet18_keys.json",
            512,
            "layer4.1",
        ),
        (
            BackboneKind::Resnet34,
            "resnet34_keys.json",
            512,
            "layer4.2",
        ),
        (
            BackboneKind::Resnet50,
            "resnet50_keys.json",
            2048,
            "layer4.2",
        ),
        (
            BackboneKind::Resnet101,
            "resnet101_keys.json",
            2048,
            "layer4.2",
        ),
        (
            BackboneKind::Resnet152,
            "resnet152_keys.json",
            2048,
            "layer4.2",
        ),
    ] {
        let want = backbone_keys(file, "fc.")?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let net = ResNet::new(kind, vb)?;
        assert_eq!(var_shapes(&varmap)?, want, "{kind}");
        assert_eq!(net.out_channels(), channels);
        assert_eq!(net.last_block_prefixes(), vec![last.to_string()]);
    }
    Ok(())
}

#[test]
fn mismatched_weights_are_listed() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.safetensors");
    let mut t = HashMap::new();
    t.insert(
        "conv1.weight".to_string(),
        Tensor::zeros((8, 3, 5, 5), DType::F32, &dev)?,
    );
    t.insert(
        "layer9.weight".to_string(),
        Tensor::zeros(3, DType::F32, &dev)?,
    );
    t.insert(
        "fc.weight".to_string(),
        Tensor::zeros((2, 2), DType::F32, &dev)?,
    );
    candle_core::safetensors::save(&t, &path)?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    ResNet::with_blocks(
        BackboneKind::Resnet18,
        BlockKind::Basic,
        [1, 1, 1, 1],
        8,
        vb,
    )?;
    let err = load_weights(&varmap, "", &path, "resnet18").unwrap_err();
    assert!(matches!(err, Error::WeightMismatch { .. }));
    let msg = err.to_string();
    assert!(msg.contains("bad.safetensors"), "{msg}");
    assert!(
        msg.contains("missing") && msg.contains("bn1.weight"),
        "{msg}"
    );
    assert!(msg.contains("unexpected 1 keys: layer9.weight"), "{msg}");
    assert!(msg.contains("mis-shaped 1 keys: conv1.weight"), "{msg}");
    assert!(
        !msg.contains("fc.weight"),
        "the classifier is an expected extra: {msg}"
    );
    // Not a weight file at all.
    std::fs::write(dir.path().join("junk.pth"), b"junk")?;
    let err = load_weights(&varmap, "", &dir.path().join("junk.pth"), "resnet18").unwrap_err();
    assert!(err.to_string().contains("junk.pth"), "{err}");
    Ok(())
}

#[test]
fn torch_checkpoints_load() -> anyhow::Result<()> {
    // resnet_basic's weights as `{"epoch": 3, "state_dict": {"module.<name>": …}}`.
    let fx = Fixture::load("resnet_basic.safetensors")?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = ResNet::with_blocks(
        BackboneKind::Resnet18,
        BlockKind::Basic,
        [2, 1, 1, 1],
        8,
        vb.pp("_net"),
    )?;
    let path = fixture("resnet_basic_checkpoint.pth");
    let report = load_weights(&varmap, "_net", &path, "small resnet")?;
    assert_eq!(report.loaded, fx.weights.len() - 2);
    assert!(report
        .ignored
        .iter()
        .any(|k| k.ends_with("num_batches_tracked")));
    let d = max_abs_diff(
        &net.features(fx.get("input")?, false)?,
        fx.get("features_eval")?,
    )?;
    assert!(d <= 1e-4, "max abs diff {d}");

    // A legacy-format (pre-1.6) file is read too; this one holds a single tensor
    // `conv1.weight` of shape (1,), which does not fit.
    let err = load_weights(
        &varmap,
        "_net",
        &fixture("legacy_format.pth"),
        "small resnet",
    )
    .unwrap_err();
    assert!(matches!(err, Error::WeightMismatch { .. }), "{err}");
    assert!(err.to_string().contains("legacy_format.pth"), "{err}");
    assert!(
        err.to_string().contains("mis-shaped 1 keys: conv1.weight"),
        "{err}"
    );
    Ok(())
}
