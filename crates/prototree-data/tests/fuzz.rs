//! Property-based fuzzing of CUB metadata parsing and image decoding: arbitrary text in
//! the metadata files and arbitrary bytes as images give errors, never panics.

use proptest::prelude::*;
use prototree_data::{load_rgb, CubDataset};

const FILES: [&str; 6] = [
    "images.txt",
    "classes.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "bounding_boxes.txt",
    "parts/part_locs.txt",
];

fn valid_set(root: &std::path::Path) {
    let cfg = prototree_data::SynthConfig {
        classes: 3,
        per_class: 2,
        size: 32,
        seed: 0,
        train_fraction: 0.5,
        ..Default::default()
    };
    prototree_data::generate(&cfg, root, &mut |_, _| {}).unwrap();
}

fn line_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9 ]{0,12}",
        "[0-9]{1,3} [0-9a-z_./]{0,20}",
        "[0-9]{1,3} -?[0-9]{1,4}(\\.[0-9]{1,2})? [0-9.e+-]{1,6} [0-9]{0,3} [01]",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_metadata_lines_never_panic(file in 0usize..FILES.len(), lines in prop::collection::vec(line_strategy(), 0..6), append in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        valid_set(dir.path());
        let path = dir.path().join(FILES[file]);
        let mut text = if append { std::fs::read_to_string(&path).unwrap_or_default() } else { String::new() };
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        if let Err(e) = CubDataset::open(dir.path()) {
            // The error names the data set's directory (and usually the file and line).
            prop_assert!(e.to_string().contains(dir.path().to_str().unwrap()), "{}", e);
        }
    }

    #[test]
    fn arbitrary_bytes_as_an_image_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), png_header in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let mut data = if png_header { b"\x89PNG\r\n\x1a\n".to_vec() } else { Vec::new() };
        data.extend(bytes);
        std::fs::write(&path, data).unwrap();
        if let Err(e) = load_rgb(&path) {
            prop_assert!(e.to_string().contains("x.png"), "{}", e);
        }
    }
}
