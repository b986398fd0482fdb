//! `read_state_dict` (safetensors, zip and legacy `.pth`, sniffed by content) on a file
//! of arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    prototree_fuzz::set_budget();
    let dir = prototree_fuzz::scratch("state-dict");
    let path = dir.join("weights");
    if std::fs::write(&path, data).is_ok() {
        let _ = prototree_torch::read_state_dict(&path);
    }
});
