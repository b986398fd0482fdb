//! `run.toml` on arbitrary text: parse and check, an error or a configuration whose
//! every size and rate is in range.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use prototree::prelude::RunConfig;

fuzz_target!(|data: &[u8]| {
    prototree_fuzz::set_budget();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = RunConfig::from_toml(text, Path::new("run.toml")) {
        if cfg.check(Path::new("run.toml")).is_ok() {
            let _ = cfg.to_toml();
            let _ = cfg.recipe_summary();
        }
    }
});
