//! The pickle reader on arbitrary bytes: errors only, bounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((g, root, used)) = prototree_torch::pickle::parse(data) {
        assert!(used <= data.len());
        assert!(root < g.len());
        let _ = g.class_of(root);
        let _ = g.dict(root);
    }
});
