//! Reference parity: checkpoints saved by the PyTorch reference (fixtures/reference, made by
//! `make_fixtures.py`) import, and the imported trees answer as the reference did: class
//! distributions within 1e-4, identical greedy / max-leaf predictions, leaves and paths.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use prototree_reference::{
    convert, import_reference, load_reference, Error, ImportOptions, LeafMode, ReferenceCheckpoint,
};
use prototree_torch::FileFormat;
use prototree_tree::{load_model, ProtoTree, Routing};
use serde::Deserialize;

const TOLERANCE: f32 = 1e-4;

#[derive(Debug, Deserialize)]
struct ModeOutputs {
    probabilities: Vec<Vec<f32>>,
    predictions: Vec<usize>,
    #[serde(default)]
    leaf_nodes: Vec<u32>,
    #[serde(default)]
    paths: Vec<Vec<u32>>,
}

#[derive(Debug, Deserialize)]
struct Expected {
    name: String,
    backbone: String,
    depth: usize,
    num_classes: usize,
    image_size: u32,
    log_probabilities: bool,
    kontschieder_normalization: bool,
    legacy_serialization: bool,
    pruned: bool,
    files: Vec<String>,
    images: Vec<String>,
    inputs: String,
    leaf_keys: Vec<String>,
    num_branches: usize,
    num_leaves: usize,
    soft: ModeOutputs,
    greedy: ModeOutputs,
    max_leaf: ModeOutputs,
    similarities: HashMap<String, Vec<f32>>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/reference")
}

/// The fixture's expectations and a directory holding its checkpoint files (gunzipped into
/// a temporary directory where the fixture stores them compressed).
fn open_fixture(name: &str) -> Result<(Expected, PathBuf, Option<tempfile::TempDir>)> {
    let dir = fixtures().join(name);
    let text = std::fs::read_to_string(dir.join("expected.json"))
        .with_context(|| format!("fixture {name}"))?;
    let expected: Expected = serde_json::from_str(&text)?;
    if expected.files.iter().any(|f| f.ends_with(".gz")) {
        let tmp = tempfile::tempdir()?;
        for f in &expected.files {
            let src = std::fs::File::open(dir.join(f))?;
            let mut gz = flate2::read::GzDecoder::new(src);
            let mut out = std::fs::File::create(tmp.path().join(f.trim_end_matches(".gz")))?;
            std::io::copy(&mut gz, &mut out)?;
        }
        let path = tmp.path().to_path_buf();
        return Ok((expected, path, Some(tmp)));
    }
    Ok((expected, dir, None))
}

fn inputs(expected: &Expected) -> Result<Tensor> {
    let path = fixtures().join(&expected.name).join(&expected.inputs);
    let mut map = candle_core::safetensors::load(&path, &Device::Cpu)?;
    map.remove("inputs").context("no `inputs` tensor")
}

fn options(expected: &Expected) -> ImportOptions {
    ImportOptions {
        image_size: Some(expected.image_size),
        ..Default::default()
    }
}

fn max_abs_diff(ours: &[Vec<f32>], theirs: &[Vec<f32>]) -> Result<f32> {
    if ours.len() != theirs.len() {
        bail!("{} rows vs {}", ours.len(), theirs.len());
    }
    let mut worst = 0f32;
    for (a, b) in ours.iter().zip(theirs) {
        if a.len() != b.len() {
            bail!("row length {} vs {}", a.len(), b.len());
        }
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    Ok(worst)
}

/// Checks a routing mode that ends in one leaf (greedy, max-leaf) against the reference:
/// classes, reached leaves and (greedy) paths must be equal; returns the largest
/// difference of the leaf distributions.
fn check_leaf_routing(
    model: &ProtoTree,
    x: &Tensor,
    routing: Routing,
    want: &ModeOutputs,
    expected: &Expected,
) -> Result<f32> {
    let topo = model.topology();
    let leaf_node = |leaf: usize| topo.node_id(topo.leaf_heap(leaf)).0;
    let got = model.predict(x, routing)?;
    let probs: Vec<Vec<f32>> = got.iter().map(|p| p.probabilities.clone()).collect();
    let name = (&expected.name, routing.name());
    for (b, p) in got.iter().enumerate() {
        assert_eq!(
            p.class_index, want.predictions[b],
            "{name:?}: class of image {b}"
        );
        assert_eq!(
            leaf_node(p.leaf),
            want.leaf_nodes[b],
            "{name:?}: leaf of image {b}"
        );
        if routing == Routing::Greedy {
            let mut path: Vec<u32> = p.path.iter().map(|s| s.node.0).collect();
            path.push(leaf_node(p.leaf));
            assert_eq!(path, want.paths[b], "{name:?}: path of image {b}");
        }
    }
    max_abs_diff(&probs, &want.probabilities)
}

/// Checks every routing mode of `model` against the reference; returns the largest
/// absolute differences (soft, greedy, max-leaf, similarities).
fn check_outputs(model: &ProtoTree, expected: &Expected) -> Result<[f32; 4]> {
    let x = inputs(expected)?;
    let topo = model.topology();

    let out = model.forward(&x, false)?;
    let soft = out.probabilities.to_vec2::<f32>()?;
    let d_soft = max_abs_diff(&soft, &expected.soft.probabilities)?;
    let soft_pred = model.predict(&x, Routing::Soft)?;
    let classes: Vec<usize> = soft_pred.iter().map(|p| p.class_index).collect();
    assert_eq!(
        classes, expected.soft.predictions,
        "{}: soft predictions",
        expected.name
    );

    // Similarities of the live branches, by reference node index.
    let routing = out.routing.to_vec2::<f32>()?;
    let mut d_sim = 0f32;
    for (node, values) in &expected.similarities {
        let id: u32 = node.parse()?;
        let h = topo
            .heap_of(prototree_tree::NodeId(id))
            .with_context(|| format!("node {id}"))?;
        for (b, v) in values.iter().enumerate() {
            d_sim = d_sim.max((routing[b][h] - v).abs());
        }
    }

    let d_greedy = check_leaf_routing(model, &x, Routing::Greedy, &expected.greedy, expected)?;
    let d_max = check_leaf_routing(model, &x, Routing::MaxLeaf, &expected.max_leaf, expected)?;
    let diffs = [d_soft, d_greedy, d_max, d_sim];
    eprintln!(
        "{}: max |ours - reference|: soft {:.2e}, greedy {:.2e}, max-leaf {:.2e}, similarities {:.2e}",
        expected.name, diffs[0], diffs[1], diffs[2], diffs[3]
    );
    for d in diffs {
        assert!(
            d <= TOLERANCE,
            "{}: difference {d} > {TOLERANCE}",
            expected.name
        );
    }
    Ok(diffs)
}

/// Imports a fixture, checks its outputs, then saves it as our model directory, loads
/// that back and checks again.
fn parity(name: &str) -> Result<()> {
    let (expected, dir, _tmp) = open_fixture(name)?;
    let imported = load_reference(&dir, &options(&expected), &Device::Cpu)?;
    let report = &imported.report;
    assert_eq!(
        report.backbone.name(),
        expected.backbone.replace("smallcnn", "small-cnn")
    );
    assert_eq!(report.depth, expected.depth);
    assert_eq!(report.num_classes, expected.num_classes);
    assert_eq!(report.num_decisions, expected.num_branches);
    assert_eq!(report.num_leaves, expected.num_leaves);
    assert_eq!(report.pruned, expected.pruned);
    assert_eq!(report.log_probabilities, expected.log_probabilities);
    assert_eq!(
        report.leaf_mode == LeafMode::KontschiederNormalization,
        expected.kontschieder_normalization
    );
    let legacy = if expected.legacy_serialization {
        FileFormat::Legacy
    } else {
        FileFormat::Zip
    };
    assert_eq!(report.files.tensors_format, legacy);
    assert_eq!(report.files.structure_format, FileFormat::Pickle);
    assert!(report
        .ignored_tensors
        .iter()
        .all(|k| k.ends_with("num_batches_tracked")));
    let meta = &imported.saved.meta;
    assert_eq!(meta.preprocessing.image_size, expected.image_size);
    assert_eq!(meta.class_names[0], "class_000");
    assert_eq!(
        imported.saved.stage().name(),
        if expected.pruned { "pruned" } else { "trained" }
    );
    check_outputs(&imported.saved.model, &expected)?;

    // Leaf keys written by our save are the reference's.
    let named = prototree_tree::io::named_tensors(&imported.saved.model)?;
    let mut ours: Vec<String> = named
        .keys()
        .filter(|k| k.ends_with("._dist_params"))
        .cloned()
        .collect();
    ours.sort();
    assert_eq!(ours, expected.leaf_keys);

    let out = tempfile::tempdir()?;
    let report = import_reference(&dir, out.path(), &options(&expected))?;
    assert_eq!(report.output.as_deref(), Some(out.path()));
    let loaded = load_model(out.path(), &Device::Cpu)?;
    check_outputs(&loaded.model, &expected)?;
    Ok(())
}

#[test]
fn smallcnn_depth3() -> Result<()> {
    parity("smallcnn_d3")
}

#[test]
fn smallcnn_depth4_pruned_log_probabilities() -> Result<()> {
    parity("smallcnn_d4_pruned_log")
}

#[test]
fn smallcnn_depth2_kontschieder_pre_zip_files() -> Result<()> {
    parity("smallcnn_d2_kontschieder_legacy")
}

#[test]
fn resnet18_depth3_pruned() -> Result<()> {
    parity("resnet18_d3_pruned")
}

/// Every file of a checkpoint alone is enough: `model.pth` (tree and tensors), `tree.pkl`
/// (tensors from its inline storages), and both formats of `model.pth`.
#[test]
fn single_files_import_alike() -> Result<()> {
    for name in ["smallcnn_d4_pruned_log", "smallcnn_d2_kontschieder_legacy"] {
        let (expected, dir, _tmp) = open_fixture(name)?;
        for file in ["model.pth", "tree.pkl"] {
            let tmp = tempfile::tempdir()?;
            std::fs::copy(dir.join(file), tmp.path().join(file))?;
            let imported = load_reference(tmp.path(), &options(&expected), &Device::Cpu)?;
            assert_eq!(imported.report.files.tensors, tmp.path().join(file));
            check_outputs(&imported.saved.model, &expected)?;
        }
    }
    Ok(())
}

/// Our test-time transform gives the reference's input tensors (the fixture images are
/// already at the model's size, so the resize is the identity on both sides).
#[test]
fn preprocessing_matches_the_reference_transform() -> Result<()> {
    use prototree_data::transform::{resize_square, to_chw, Normalization};
    for name in ["smallcnn_d3", "resnet18_d3_pruned"] {
        let (expected, _, _tmp) = open_fixture(name)?;
        let want = inputs(&expected)?;
        let s = expected.image_size as usize;
        let mut worst = 0f32;
        for (i, img) in expected.images.iter().enumerate() {
            let path = fixtures().join(&expected.name).join(img);
            let rgb = image::open(&path)?.to_rgb8();
            let rgb = resize_square(&rgb, expected.image_size);
            let mut buf = vec![0f32; 3 * s * s];
            to_chw(&rgb, &Normalization::IMAGENET, &mut buf);
            let theirs = want.get(i)?.flatten_all()?.to_vec1::<f32>()?;
            for (a, b) in buf.iter().zip(&theirs) {
                worst = worst.max((a - b).abs());
            }
        }
        eprintln!("{name}: preprocessing max |ours - reference| = {worst:.2e}");
        assert!(worst <= 1e-5, "{worst}");
    }
    Ok(())
}

#[test]
fn mismatched_pickle_and_state_dict_are_reported() -> Result<()> {
    // tree.pkl of the pruned depth-4 tree with the state dict of the depth-3 tree.
    let (_, a, _t1) = open_fixture("smallcnn_d4_pruned_log")?;
    let (_, b, _t2) = open_fixture("smallcnn_d3")?;
    let tmp = tempfile::tempdir()?;
    std::fs::copy(a.join("tree.pkl"), tmp.path().join("tree.pkl"))?;
    std::fs::copy(
        b.join("model_state.pth"),
        tmp.path().join("model_state.pth"),
    )?;
    let err = load_reference(tmp.path(), &ImportOptions::default(), &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Keys { .. }), "{msg}");
    assert!(msg.contains("_root.r.l._dist_params (missing)"), "{msg}");
    assert!(
        msg.contains("_root.r.l.l._dist_params (not in the pickled tree)"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn unsupported_and_broken_inputs_give_errors() -> Result<()> {
    let (_, dir, _tmp) = open_fixture("smallcnn_d3")?;
    // No checkpoint at all.
    let empty = tempfile::tempdir()?;
    let err = load_reference(empty.path(), &ImportOptions::default(), &Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::MissingFiles { .. }), "{err}");

    // A VGG backbone is named.
    let mut ckpt = ReferenceCheckpoint::read(&dir)?;
    let net: Vec<String> = ckpt
        .tensors
        .keys()
        .filter(|k| k.starts_with("_net."))
        .cloned()
        .collect();
    for (i, k) in net.iter().enumerate() {
        if let Some(t) = ckpt.tensors.remove(k) {
            ckpt.tensors.insert(format!("_net.features.{i}.weight"), t);
        }
    }
    ckpt.tensors.insert(
        "_net.features.0.weight".into(),
        Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu)?,
    );
    let err = convert(&ckpt, &ImportOptions::default(), &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("VGG"), "{err}");

    // A tensor we cannot map is listed.
    let mut ckpt = ReferenceCheckpoint::read(&dir)?;
    ckpt.tensors.insert(
        "_net.extra.weight".into(),
        Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu)?,
    );
    let err = convert(&ckpt, &ImportOptions::default(), &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("_net.extra.weight"), "{err}");

    // Wrong number of class names.
    let ckpt = ReferenceCheckpoint::read(&dir)?;
    let opts = ImportOptions {
        class_names: Some(vec!["a".into()]),
        ..Default::default()
    };
    assert!(matches!(
        convert(&ckpt, &opts, &Device::Cpu),
        Err(Error::ClassNames {
            given: 1,
            expected: 5
        })
    ));

    // Truncated files fail cleanly.
    for file in ["tree.pkl", "model_state.pth", "model.pth"] {
        let bytes = std::fs::read(dir.join(file))?;
        for cut in [10, bytes.len() / 3, bytes.len() - 100] {
            let tmp = tempfile::tempdir()?;
            std::fs::write(tmp.path().join(file), &bytes[..cut])?;
            if file == "model_state.pth" {
                std::fs::copy(dir.join("tree.pkl"), tmp.path().join("tree.pkl"))?;
            }
            let r = load_reference(tmp.path(), &ImportOptions::default(), &Device::Cpu);
            assert!(r.is_err(), "{file} cut at {cut} was accepted");
        }
    }

    // A state dict instead of a module where the tree is expected.
    let tmp = tempfile::tempdir()?;
    std::fs::copy(dir.join("model_state.pth"), tmp.path().join("model.pth"))?;
    let err = load_reference(tmp.path(), &ImportOptions::default(), &Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::NotAProtoTree { .. }), "{err}");
    Ok(())
}

/// The ResNet-18 checkpoint reads and maps without our backbone: backbone recognised from
/// the keys, pruned tree and `_out_map` recovered.
#[test]
fn resnet18_checkpoint_reads() -> Result<()> {
    let (expected, dir, _tmp) = open_fixture("resnet18_d3_pruned")?;
    let ckpt = ReferenceCheckpoint::read(&dir)?;
    let mut keys: Vec<String> = ckpt.tensors.keys().cloned().collect();
    keys.sort();
    let kind = prototree_reference::detect_backbone(&keys, ckpt.tree.backbone_class.as_deref())?;
    assert_eq!(kind, prototree_backbone::BackboneKind::Resnet18);
    assert_eq!(
        ckpt.tree.backbone_class.as_deref(),
        Some("features.resnet_features.ResNet_features")
    );
    assert_eq!(ckpt.tree.out_map.len(), 7);
    assert_eq!(ckpt.tree.branches().count(), expected.num_branches);
    let mut leaves: Vec<String> = ckpt.tree.leaves().map(|n| n.leaf_key()).collect();
    leaves.sort();
    assert_eq!(leaves, expected.leaf_keys);
    assert_eq!(
        ckpt.tensors["_net.layer4.1.conv2.weight"].dims(),
        &[512, 512, 3, 3]
    );
    Ok(())
}
