//! Model directory round trip and load-time checks.

mod common;

use common::{small_cnn, trained_meta};

use std::path::Path;

use candle_core::{Device, Tensor};
use prototree_tree::io::{CONFIG_FILE, TENSORS_FILE, TREE_FILE};
use prototree_tree::{
    load_model, save_model, topology::prune_branch, Direction, Leaves, ModelMeta, NodeId,
    ProjectionRecord, ProtoTree, Topology, TreeConfig,
};

fn meta(cfg: &TreeConfig) -> ModelMeta {
    let class_names = (0..cfg.num_classes).map(|i| format!("class_{i}")).collect();
    trained_meta(cfg.clone(), class_names, 32, 0.25)
}

fn model(cfg: &TreeConfig) -> anyhow::Result<ProtoTree> {
    let mut m = ProtoTree::new(&cfg.check()?, &Device::Cpu, 11)?;
    let l = 1 << cfg.depth;
    let params = Tensor::randn(0f32, 2.0, (l, cfg.num_classes), &Device::Cpu)?.relu()?;
    m.set_leaves(Leaves::from_params(params)?)?;
    let mut topo = Topology::complete(cfg.depth)?;
    prune_branch(&mut topo, 1, Direction::Right);
    m.set_topology(topo)?;
    Ok(m)
}

#[test]
fn round_trip_gives_identical_outputs() -> anyhow::Result<()> {
    let cfg = small_cnn(3, 8, 4);
    let m = model(&cfg)?;
    let dir = tempfile::tempdir()?;
    let rec = ProjectionRecord {
        node: NodeId(0),
        row: 0,
        image_index: 5,
        image_path: "a.png".into(),
        patch_row: 1,
        patch_col: 2,
        fmap_height: 4,
        fmap_width: 4,
        distance: 0.25,
    };
    save_model(dir.path(), &m, &meta(&cfg), std::slice::from_ref(&rec))?;
    let loaded = load_model(dir.path(), &Device::Cpu)?;
    assert_eq!(loaded.projections(), [rec]);
    assert_eq!(loaded.model.topology(), m.topology());
    let x = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu)?;
    let a = m.forward(&x, false)?.probabilities.to_vec2::<f32>()?;
    let b = loaded
        .model
        .forward(&x, false)?
        .probabilities
        .to_vec2::<f32>()?;
    assert_eq!(a, b);
    // Leaves of the removed subtree are not stored; the kept ones are, under the
    // reference's effective-path keys.
    let names = candle_core::safetensors::load(dir.path().join(TENSORS_FILE), &Device::Cpu)?;
    assert!(names.contains_key("_root.l.l._dist_params"));
    assert!(names.contains_key("_root.r.r.r._dist_params"));
    assert!(!names.contains_key("_root.l.l.l._dist_params"));
    assert!(names.contains_key("prototype_layer.prototype_vectors"));
    assert!(names.contains_key("_add_on.0.weight"));
    Ok(())
}

/// Writes `contents` to `file` of the model directory `dir` and returns the error that
/// loading the model then gives (an error of its own when it loads).
fn load_error_after_writing(
    dir: &Path,
    file: &Path,
    contents: impl AsRef<[u8]>,
) -> anyhow::Result<String> {
    std::fs::write(file, contents)?;
    match load_model(dir, &Device::Cpu) {
        Ok(_) => anyhow::bail!("{} still loads", dir.display()),
        Err(e) => Ok(e.to_string()),
    }
}

#[test]
fn load_errors_name_the_file() -> anyhow::Result<()> {
    let cfg = small_cnn(2, 4, 3);
    let m = model(&cfg)?;
    let dir = tempfile::tempdir()?;
    save_model(dir.path(), &m, &meta(&cfg), &[])?;

    // Truncated tensors.
    let p = dir.path().join(TENSORS_FILE);
    let bytes = std::fs::read(&p)?;
    let err = load_error_after_writing(dir.path(), &p, &bytes[..bytes.len() / 2])?;
    assert!(err.contains(TENSORS_FILE), "{err}");
    std::fs::write(&p, &bytes)?;

    // Corrupt tree.bin.
    let t = dir.path().join(TREE_FILE);
    let tree_bytes = std::fs::read(&t)?;
    let err = load_error_after_writing(dir.path(), &t, [0xff, 0xff, 0xff])?;
    assert!(err.contains(TREE_FILE), "{err}");
    std::fs::write(&t, &tree_bytes)?;

    // Newer format version.
    let c = dir.path().join(CONFIG_FILE);
    let json = std::fs::read_to_string(&c)?;
    let newer = json.replace("\"format_version\": 1", "\"format_version\": 99");
    let err = load_error_after_writing(dir.path(), &c, newer)?;
    assert!(err.contains("99") && err.contains(CONFIG_FILE), "{err}");

    // Class count that does not match the tensors.
    let more_classes = json.replace("\"num_classes\": 3", "\"num_classes\": 5");
    let err = load_error_after_writing(dir.path(), &c, more_classes)?;
    assert!(err.contains("class names"), "{err}");
    std::fs::write(&c, &json)?;
    assert!(load_model(dir.path(), &Device::Cpu).is_ok());
    Ok(())
}
