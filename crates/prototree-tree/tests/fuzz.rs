//! Property-based fuzzing of the model files: random and mutated `tree.bin`,
//! `config.json` and `train_state.bin` never panic the loader (bounded case counts).

mod common;

use common::{small_cnn, trained_meta};

use std::path::Path;

use candle_core::Device;
use proptest::prelude::*;
use prototree_tree::io::{save_model, CONFIG_FILE, TREE_FILE};
use prototree_tree::{load_model, ModelMeta, ProtoTree};

fn saved_model(dir: &Path) -> ModelMeta {
    let cfg = small_cnn(2, 4, 3);
    let model = ProtoTree::new(&cfg.check().unwrap(), &Device::Cpu, 1).unwrap();
    let meta = trained_meta(cfg, vec!["a".into(), "b".into(), "c".into()], 16, 0.5);
    save_model(dir, &model, &meta, &[]).unwrap();
    meta
}

/// Applies `edits` (position, new byte) and a truncation to `bytes`.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], keep: usize) -> Vec<u8> {
    for (pos, b) in edits {
        if !bytes.is_empty() {
            let i = pos % bytes.len();
            bytes[i] = *b;
        }
    }
    bytes.truncate(keep.max(1).min(bytes.len()));
    bytes
}

/// Saves a model, applies [`mutate`] to its `file` and loads it: any outcome but a panic
/// is fine, and an error must name the model directory.
fn load_mutated(file: &str, edits: &[(usize, u8)], keep: usize) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    saved_model(dir.path());
    let original = std::fs::read(dir.path().join(file)).unwrap();
    std::fs::write(dir.path().join(file), mutate(original, edits, keep)).unwrap();
    if let Err(e) = load_model(dir.path(), &Device::Cpu) {
        prop_assert!(
            e.to_string().contains(dir.path().to_str().unwrap()),
            "{}",
            e
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_tree_bin_never_panics(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8), keep in 0usize..64) {
        load_mutated(TREE_FILE, &edits, keep)?;
    }

    #[test]
    fn random_tree_bin_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().unwrap();
        saved_model(dir.path());
        std::fs::write(dir.path().join(TREE_FILE), &bytes).unwrap();
        let _ = load_model(dir.path(), &Device::Cpu);
    }

    #[test]
    fn mutated_config_json_never_panics(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6), keep in 1usize..4096) {
        load_mutated(CONFIG_FILE, &edits, keep)?;
    }

    #[test]
    fn config_values_out_of_range_are_errors(depth in 0usize..40, dim in 0usize..5000, classes in 0usize..5, size in 0u32..100_000) {
        let dir = tempfile::tempdir().unwrap();
        let meta = saved_model(dir.path());
        let mut v = serde_json::to_value(&meta).unwrap();
        v["tree"]["depth"] = depth.into();
        v["tree"]["proto_dim"] = dim.into();
        v["tree"]["num_classes"] = classes.into();
        v["preprocessing"]["image_size"] = size.into();
        std::fs::write(dir.path().join(CONFIG_FILE), serde_json::to_vec(&v).unwrap()).unwrap();
        let _ = load_model(dir.path(), &Device::Cpu);
    }
}
