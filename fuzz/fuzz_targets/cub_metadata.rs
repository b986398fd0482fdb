//! A CUB-200-2011 data set's metadata files (from one multi-file input): opening checks
//! every file, an error or a data set.
#![no_main]

use libfuzzer_sys::fuzz_target;

const FILES: [&str; 7] = [
    "classes.txt",
    "images.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "bounding_boxes.txt",
    "parts/parts.txt",
    "parts/part_locs.txt",
];

fuzz_target!(|data: &[u8]| {
    let dir = prototree_fuzz::scratch("cub");
    prototree_fuzz::write_files(&dir, data, &FILES);
    if let Ok(ds) = prototree_data::CubDataset::open(&dir) {
        let _ = ds.samples(prototree_data::Split::Train);
        let _ = ds.num_classes();
    }
});
