//! The iNaturalist ResNet-50 (`--backbone resnet50-inat`): checkpoints in BBN's layout
//! (`module.backbone.*`, the last block as `cb_block`, a second branch `rb_block`, a
//! classifier on both), generated here with that key layout, load as torchvision's
//! ResNet-50 with `cb_block` as `layer4.2`; anything else is refused.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use prototree_backbone::bbn::bbn_to_torchvision;
use prototree_backbone::{
    build_backbone, load_pretrained, load_weights_from, BackboneKind, BlockKind, ResNet,
};

/// The names and shapes of every variable in `varmap`.
fn var_shapes(varmap: &VarMap) -> anyhow::Result<BTreeMap<String, Vec<usize>>> {
    Ok(varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect())
}

/// BBN's name of a torchvision ResNet-50 tensor (before the `module.` prefix).
fn bbn_name(torchvision: &str) -> String {
    match torchvision.strip_prefix("layer4.2.") {
        Some(rest) => format!("backbone.cb_block.{rest}"),
        None => format!("backbone.{torchvision}"),
    }
}

/// A BBN-layout state dict for the variables of `varmap`: each tensor filled with a value
/// that tells it apart, the re-balancing branch with another, plus a classifier.
fn bbn_state(varmap: &VarMap, prefix: &str) -> anyhow::Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (i, (name, dims)) in var_shapes(varmap)?.into_iter().enumerate() {
        let v = (i + 1) as f64;
        let t = Tensor::full(v as f32, dims.as_slice(), &Device::Cpu)?;
        if let Some(rest) = name.strip_prefix("layer4.2.") {
            let rb = Tensor::full(-1f32, dims.as_slice(), &Device::Cpu)?;
            out.insert(format!("{prefix}backbone.rb_block.{rest}"), rb);
        }
        out.insert(format!("{prefix}{}", bbn_name(&name)), t);
    }
    let channels = 8 * 8 * 4;
    out.insert(
        format!("{prefix}classifier.weight"),
        Tensor::zeros((5, 2 * channels), DType::F32, &Device::Cpu)?,
    );
    Ok(out)
}

#[test]
fn a_bbn_file_loads_with_cb_block_as_the_last_block() -> anyhow::Result<()> {
    // A small ResNet with BBN's block structure (layer4: two blocks + cb_block).
    let small = |varmap: &VarMap| {
        let vb = VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu);
        ResNet::with_blocks(
            BackboneKind::Resnet50Inat,
            BlockKind::Bottleneck,
            [1, 1, 1, 3],
            8,
            vb.pp("_net"),
        )
    };
    let reference = VarMap::new();
    let local = VarMap::new();
    {
        let vb = VarBuilder::from_varmap(&local, DType::F32, &Device::Cpu);
        ResNet::with_blocks(
            BackboneKind::Resnet50Inat,
            BlockKind::Bottleneck,
            [1, 1, 1, 3],
            8,
            vb,
        )?;
    }
    let _net = small(&reference)?;
    let state = bbn_state(&local, "module.")?;
    let dir = tempfile::tempdir()?;
    let path = dir
        .path()
        .join("BBN.iNaturalist2017.res50.180epoch.best_model.safetensors");
    candle_core::safetensors::save(&state, &path)?;
    let report = load_pretrained(&reference, "_net", &path, BackboneKind::Resnet50Inat)?;
    assert_eq!(report.loaded, var_shapes(&local)?.len());
    let data = reference
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?;
    for (name, var) in data.iter() {
        let local_name = name.trim_start_matches("_net.");
        let want = state
            .get(&format!("module.{}", bbn_name(local_name)))
            .ok_or_else(|| anyhow::anyhow!("{name}"))?;
        let diff = (var.as_tensor() - want)?.abs()?.flatten_all()?.max(0)?;
        assert_eq!(diff.to_scalar::<f32>()?, 0.0, "{name}");
    }
    // The re-balancing branch (all −1) went nowhere.
    let last = data
        .get("_net.layer4.2.conv1.weight")
        .ok_or_else(|| anyhow::anyhow!("layer4.2"))?;
    assert!(last.as_tensor().flatten_all()?.min(0)?.to_scalar::<f32>()? > 0.0);
    Ok(())
}

#[test]
fn the_full_key_layout_maps_onto_torchvision_resnet50() -> anyhow::Result<()> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let _net = build_backbone(BackboneKind::Resnet50Inat, vb)?;
    // BBN's names for every torchvision ResNet-50 tensor, with tiny stand-in tensors: the
    // mapping is checked by name here, so each tensor is a scalar.
    let shapes = var_shapes(&varmap)?;
    let mut file: HashMap<String, Tensor> = HashMap::new();
    for name in shapes.keys() {
        file.insert(bbn_name(name), Tensor::zeros(1, DType::F32, &Device::Cpu)?);
        if let Some(rest) = name.strip_prefix("layer4.2.") {
            let rb = Tensor::zeros(1, DType::F32, &Device::Cpu)?;
            file.insert(format!("backbone.rb_block.{rest}"), rb);
        }
    }
    file.insert(
        "classifier.weight".into(),
        Tensor::zeros(1, DType::F32, &Device::Cpu)?,
    );
    assert!(file.keys().any(|k| k.starts_with("backbone.layer4.1.")));
    assert!(!file.keys().any(|k| k.starts_with("backbone.layer4.2.")));
    let mapped = bbn_to_torchvision(file, std::path::Path::new("bbn.pth"))?;
    let mut got: Vec<&String> = mapped.keys().collect();
    got.sort();
    let want: Vec<&String> = shapes.keys().collect();
    assert_eq!(got, want);
    Ok(())
}

#[test]
fn torchvision_weights_are_refused_for_the_inat_backbone() -> anyhow::Result<()> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let _net = ResNet::with_blocks(
        BackboneKind::Resnet50Inat,
        BlockKind::Bottleneck,
        [1, 1, 1, 3],
        8,
        vb,
    )?;
    let file: HashMap<String, Tensor> = var_shapes(&varmap)?
        .into_iter()
        .map(|(k, d)| Tensor::zeros(d, DType::F32, &Device::Cpu).map(|t| (k, t)))
        .collect::<Result<_, _>>()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("resnet50-torchvision.safetensors");
    candle_core::safetensors::save(&file, &path)?;
    let err = load_pretrained(&varmap, "", &path, BackboneKind::Resnet50Inat)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no backbone.cb_block"), "{err}");
    assert!(err.contains("--backbone resnet50"), "{err}");
    // The same file is fine for the plain ResNet kind.
    let report = load_pretrained(&varmap, "", &path, BackboneKind::Resnet50)?;
    assert!(report.loaded > 0);
    // A BBN file whose shapes do not fit is the usual key mismatch, after renaming.
    let mut bbn = bbn_state(&varmap, "")?;
    bbn.remove("backbone.cb_block.conv1.weight");
    let err = load_weights_from(
        &varmap,
        "",
        &bbn_to_torchvision(bbn, &path)?,
        &path,
        "resnet50-inat",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("missing 1 keys: layer4.2.conv1.weight"),
        "{err}"
    );
    Ok(())
}
