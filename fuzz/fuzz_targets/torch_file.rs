//! `torch.save` files (zip and pre-1.6 legacy archives, plain pickles) on arbitrary
//! bytes: parse, list the tensors of a module or a state dict, rebuild them.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use prototree_torch::TorchFile;

fuzz_target!(|data: &[u8]| {
    prototree_fuzz::set_budget();
    let Ok(file) = TorchFile::from_bytes(Path::new("fuzz.pth"), data.to_vec()) else {
        return;
    };
    if let Ok(entries) = file.module_entries(file.root()) {
        let _ = file.tensors(&entries);
    }
    if let Ok(entries) = file.state_dict_entries(file.root()) {
        let _ = file.tensors(&entries);
    }
});
