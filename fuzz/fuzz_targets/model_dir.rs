//! Loading a model directory and predicting one image with it: an error, or finite
//! predictions.
//!
//! The input holds `config.json`, `tree.bin` and the JSON header of `model.safetensors`
//! (see `prototree_fuzz::SEPARATOR`); the tensor bytes after the header are the
//! fixture's, so mutations go to the sizes and shapes rather than to weights.
#![no_main]

use candle_core::{Device, Tensor};
use libfuzzer_sys::fuzz_target;
use prototree_tree::Routing;

const FILES: [&str; 3] = ["config.json", "tree.bin", "header.json"];
const TENSORS: &[u8] =
    include_bytes!("../../fixtures/models/main-2026-12-01/projected/model.safetensors");

/// The fixture's tensor bytes (after its 8-byte length and header).
fn tensor_data() -> &'static [u8] {
    let mut n = [0u8; 8];
    n.copy_from_slice(&TENSORS[..8]);
    let n = usize::try_from(u64::from_le_bytes(n)).unwrap_or(usize::MAX);
    TENSORS.get(8 + n..).unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    prototree_fuzz::set_budget();
    let dir = prototree_fuzz::scratch("model-dir");
    prototree_fuzz::write_files(&dir, data, &FILES);
    let header = std::fs::read(dir.join("header.json")).unwrap_or_default();
    let mut tensors = (header.len() as u64).to_le_bytes().to_vec();
    tensors.extend_from_slice(&header);
    tensors.extend_from_slice(tensor_data());
    let _ = std::fs::write(dir.join("model.safetensors"), tensors);
    let Ok(saved) = prototree_tree::load_model(&dir, &Device::Cpu) else {
        return;
    };
    let s = saved.meta.preprocessing.image_size as usize;
    let Ok(x) = Tensor::zeros((1, 3, s, s), candle_core::DType::F32, &Device::Cpu) else {
        return;
    };
    for routing in [Routing::Soft, Routing::Greedy, Routing::MaxLeaf] {
        if let Ok(p) = saved.model.predict(&x, routing) {
            for p in p {
                assert!(p.probabilities.iter().all(|v| v.is_finite()));
            }
        }
    }
});
