//! CUB metadata problems give errors naming the file and the line.

use std::path::Path;

use prototree_data::{CubDataset, ImageFolder, Split};

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn valid(dir: &Path) {
    write(dir, "classes.txt", "1 001.Red_bird\n2 002.Blue_bird\n");
    write(
        dir,
        "images.txt",
        "1 001.Red_bird/a.png\n2 002.Blue_bird/b.png\n",
    );
    write(dir, "image_class_labels.txt", "1 1\n2 2\n");
    write(dir, "train_test_split.txt", "1 1\n2 0\n");
    write(dir, "bounding_boxes.txt", "1 0 0 5 5\n2 1 1 3 3\n");
}

fn err_of(dir: &Path) -> String {
    CubDataset::open(dir).unwrap_err().to_string()
}

#[test]
fn valid_metadata_parses() {
    let d = tempfile::tempdir().unwrap();
    valid(d.path());
    let ds = CubDataset::open(d.path()).unwrap();
    assert_eq!(ds.class_names(), ["Red_bird", "Blue_bird"]);
    assert_eq!(ds.samples(Split::Train).len(), 1);
    assert_eq!(ds.samples(Split::Test)[0].class_index, 1);
}

#[test]
fn each_problem_names_file_and_line() {
    let cases: [(&str, &str, &str); 7] = [
        (
            "image_class_labels.txt",
            "1 1\n2 x\n",
            "image_class_labels.txt:2",
        ),
        (
            "image_class_labels.txt",
            "1 1\n2 9\n",
            "image_class_labels.txt:2",
        ),
        (
            "images.txt",
            "1 001.Red_bird/a.png\n1 002.Blue_bird/b.png\n",
            "images.txt:2",
        ),
        (
            "train_test_split.txt",
            "1 1\n2 5\n",
            "train_test_split.txt:2",
        ),
        (
            "classes.txt",
            "1 001.Red_bird\n3 002.Blue_bird\n",
            "classes.txt:2",
        ),
        (
            "bounding_boxes.txt",
            "1 0 0 5\n2 1 1 3 3\n",
            "bounding_boxes.txt:1",
        ),
        ("image_class_labels.txt", "1 1\n", "image_class_labels.txt"),
    ];
    for (file, text, want) in cases {
        let d = tempfile::tempdir().unwrap();
        valid(d.path());
        write(d.path(), file, text);
        let e = err_of(d.path());
        assert!(e.contains(want), "{file}: `{e}` should mention `{want}`");
    }
    let d = tempfile::tempdir().unwrap();
    valid(d.path());
    std::fs::remove_file(d.path().join("train_test_split.txt")).unwrap();
    assert!(err_of(d.path()).contains("train_test_split.txt"));
    assert!(err_of(&d.path().join("missing")).contains("missing"));
}

#[test]
fn image_folder_checks_classes() {
    let d = tempfile::tempdir().unwrap();
    let img = image::RgbImage::new(4, 4);
    for (split, class) in [("train", "cat"), ("train", "dog"), ("test", "cat")] {
        let dir = d.path().join(split).join(class);
        std::fs::create_dir_all(&dir).unwrap();
        img.save(dir.join("x.png")).unwrap();
    }
    let f = ImageFolder::open_split(d.path()).unwrap();
    assert_eq!(f.class_names(), ["cat", "dog"]);
    assert_eq!(f.samples().len(), 3);
    std::fs::create_dir_all(d.path().join("test").join("bird")).unwrap();
    img.save(d.path().join("test").join("bird").join("y.png"))
        .unwrap();
    let e = ImageFolder::open_split(d.path()).unwrap_err().to_string();
    assert!(e.contains("bird"), "{e}");
    std::fs::create_dir_all(d.path().join("train").join("empty")).unwrap();
    let e = ImageFolder::open(&d.path().join("train"), true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty"), "{e}");
}
