//! Damaged checkpoints give errors, never panics: random byte corruptions of the pickled
//! trees and of whole checkpoint directories. (File-level robustness of the PyTorch
//! reader lives in prototree-torch's tests.)

use std::path::Path;

use anyhow::Result;
use candle_core::Device;
use prototree_reference::{load_reference, ImportOptions, ReferenceTree};
use prototree_torch::TorchFile;

/// A small deterministic generator (splitmix64), returning values below `n`.
fn below(state: &mut u64, n: usize) -> usize {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) % n.max(1) as u64) as usize
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/reference")
}

/// Changes a few bytes among the first `hot` of `bytes`.
fn corrupt(bytes: &mut [u8], hot: usize, edits: usize, state: &mut u64) {
    for _ in 0..edits {
        let at = below(state, bytes.len().min(hot));
        bytes[at] = below(state, 256) as u8;
    }
}

#[test]
fn corrupted_pickled_trees_never_panic() -> Result<()> {
    let mut state = 0x9e37_79b9_7f4a_7c15;
    let files = [
        ("smallcnn_d4_pruned_log", "tree.pkl"),
        ("smallcnn_d4_pruned_log", "model.pth"),
        ("smallcnn_d2_kontschieder_legacy", "model.pth"),
    ];
    for (name, file) in files {
        let original = std::fs::read(fixtures().join(name).join(file))?;
        for _ in 0..120 {
            let mut bytes = original.clone();
            let edits = 1 + below(&mut state, 8);
            // The structure lives in the first kilobytes (tensor bytes follow).
            corrupt(&mut bytes, 40_000, edits, &mut state);
            if let Ok(file) = TorchFile::from_bytes(Path::new("damaged"), bytes) {
                let _ = ReferenceTree::from_file(&file);
            }
        }
    }
    Ok(())
}

#[test]
fn corrupted_checkpoint_directories_never_panic() -> Result<()> {
    let mut state = 42;
    let dir = fixtures().join("smallcnn_d3");
    for round in 0..40 {
        let tmp = tempfile::tempdir()?;
        for file in ["tree.pkl", "model_state.pth"] {
            let mut bytes = std::fs::read(dir.join(file))?;
            if (round % 2 == 0) == (file == "tree.pkl") {
                let edits = 1 + below(&mut state, 4);
                corrupt(&mut bytes, 20_000, edits, &mut state);
            }
            std::fs::write(tmp.path().join(file), bytes)?;
        }
        let _ = load_reference(tmp.path(), &ImportOptions::default(), &Device::Cpu);
    }
    Ok(())
}
