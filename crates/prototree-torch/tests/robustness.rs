//! Damaged and hostile files give errors, never panics: random byte corruptions and
//! truncations of real PyTorch files (checkpoints of the ProtoTree reference), and random
//! opcode streams for the pickle reader.

use std::path::Path;

use anyhow::Result;
use prototree_torch::pickle;
use prototree_torch::{read_state_dict, TorchFile};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn fixture(name: &str, file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/reference")
        .join(name)
        .join(file)
}

/// Everything a reader does with one file, on damaged bytes.
fn exercise(bytes: Vec<u8>) {
    let Ok(file) = TorchFile::from_bytes(Path::new("damaged"), bytes) else {
        return;
    };
    if let Ok(entries) = file.module_entries(file.root()) {
        let _ = file.tensors(&entries);
    }
    if let Ok(entries) = file.state_dict_entries(file.root()) {
        let _ = file.tensors(&entries);
    }
}

#[test]
fn corrupted_reference_files_never_panic() -> Result<()> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let files = [
        ("smallcnn_d4_pruned_log", "tree.pkl"),
        ("smallcnn_d4_pruned_log", "model.pth"),
        ("smallcnn_d4_pruned_log", "model_state.pth"),
        ("smallcnn_d2_kontschieder_legacy", "model.pth"),
        ("smallcnn_d2_kontschieder_legacy", "model_state.pth"),
    ];
    for (name, file) in files {
        let original = std::fs::read(fixture(name, file))?;
        // The structure lives in the first kilobytes of the pickles (tensor bytes follow),
        // so corrupt mostly there.
        let hot = original.len().min(40_000);
        for round in 0..120 {
            let mut bytes = original.clone();
            let edits = 1 + rng.below(8);
            for _ in 0..edits {
                let at = if round % 4 == 0 {
                    rng.below(bytes.len())
                } else {
                    rng.below(hot)
                };
                bytes[at] = rng.next() as u8;
            }
            if round % 5 == 0 {
                let keep = rng.below(bytes.len());
                bytes.truncate(keep);
            }
            exercise(bytes);
        }
    }
    Ok(())
}

/// The one public entry point, on damaged files on disk (every format).
#[test]
fn corrupted_state_dict_files_never_panic() -> Result<()> {
    let mut rng = Rng(0x5eed);
    let tmp = tempfile::tempdir()?;
    let files = [
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/backbones/resnet_basic.safetensors"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/backbones/legacy_format.pth"),
        fixture("smallcnn_d3", "model_state.pth"),
    ];
    for original in files {
        let original = std::fs::read(original)?;
        for _ in 0..40 {
            let mut bytes = original.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len().min(2_000));
                bytes[at] = rng.next() as u8;
            }
            let keep = bytes.len() - rng.below(bytes.len() / 2);
            bytes.truncate(keep);
            let path = tmp.path().join("damaged.pth");
            std::fs::write(&path, bytes)?;
            let _ = read_state_dict(&path);
        }
    }
    Ok(())
}

#[test]
fn random_opcode_streams_never_panic() {
    // Opcodes with plausible arguments, in random order.
    let mut rng = Rng(7);
    let pieces: &[&[u8]] = &[
        b"(",
        b")",
        b"]",
        b"}",
        b"N",
        b"\x88",
        b"\x89",
        b"K\x05",
        b"M\x01\x02",
        b"J\x01\x00\x00\x00",
        b"\x8c\x01a",
        b"X\x01\x00\x00\x00b",
        b"C\x02xy",
        b"t",
        b"l",
        b"d",
        b"a",
        b"e",
        b"s",
        b"u",
        b"\x85",
        b"\x86",
        b"\x87",
        b"R",
        b"\x81",
        b"b",
        b"\x93",
        b"cmod\nname\n",
        b"Q",
        b"\x94",
        b"q\x00",
        b"h\x00",
        b"h\x01",
        b"2",
        b"0",
        b"1",
        b"\x8f",
        b"\x90",
        b"\x91",
        b"\x8a\x01\xff",
        b"G\x00\x00\x00\x00\x00\x00\x00\x00",
        b"\x92",
        b"i__builtin__\nset\n",
        b"o",
    ];
    for _ in 0..3000 {
        let mut s = vec![0x80, 2];
        for _ in 0..rng.below(40) {
            s.extend_from_slice(pieces[rng.below(pieces.len())]);
        }
        s.push(b'.');
        if let Ok((g, root, _)) = pickle::parse(&s) {
            assert!(g.get(root).is_some());
        }
        exercise(s);
    }
}
