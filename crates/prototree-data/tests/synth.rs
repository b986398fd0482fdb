//! The synthetic generator: determinism and annotation consistency.

use std::path::Path;

use prototree_data::{generate, load_rgb, CubDataset, Split, SynthConfig};

fn small(seed: u64) -> SynthConfig {
    SynthConfig {
        classes: 10,
        per_class: 4,
        size: 48,
        seed,
        train_fraction: 0.5,
        ..Default::default()
    }
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn same_seed_gives_identical_files() -> anyhow::Result<()> {
    let (a, b, c) = (
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    );
    generate(&small(7), a.path(), &mut |_, _| {})?;
    generate(&small(7), b.path(), &mut |_, _| {})?;
    generate(&small(8), c.path(), &mut |_, _| {})?;
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert!(fa.len() > 80);
    assert_eq!(fa, fb);
    assert_ne!(fa, fc);
    Ok(())
}

#[test]
fn annotations_are_consistent() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let summary = generate(&small(3), dir.path(), &mut |_, _| {})?;
    assert_eq!(summary.train_images + summary.test_images, 40);
    let ds = CubDataset::open(dir.path())?;
    assert_eq!(ds.num_classes(), 10);
    assert_eq!(ds.part_names(), ["crest", "beak", "eye", "wing", "tail"]);
    assert_eq!(ds.samples(Split::Train).len(), 20);
    assert_eq!(ds.samples(Split::Test).len(), 20);
    let (mut checked, mut on_label) = (0, 0);
    for s in ds.samples(Split::All) {
        let bbox = s.bbox.expect("every synthetic image has a box");
        let img = load_rgb(&s.path)?;
        assert_eq!(img.dimensions(), (48, 48));
        let mask_path = dir
            .path()
            .join("segmentations")
            .join(s.path.strip_prefix(dir.path().join("images"))?);
        let mask = image::open(&mask_path)?.to_luma8();
        let locs = ds.part_locations(s.image_id);
        assert_eq!(locs.len(), 5);
        for loc in locs {
            if !loc.visible {
                assert_eq!((loc.x, loc.y), (0.0, 0.0));
                continue;
            }
            assert!(bbox.contains(loc.x, loc.y), "part {loc:?} outside {bbox:?}");
            let (x, y) = (loc.x.floor() as u32, loc.y.floor() as u32);
            checked += 1;
            if mask.get_pixel(x.min(47), y.min(47))[0] as u32 == loc.part_id + 1 {
                on_label += 1;
            }
        }
    }
    // Part centres sit on their own part's pixels (a few land on an anti-aliased edge).
    assert!(
        on_label * 10 >= checked * 9,
        "{on_label} of {checked} part locations on their mask label"
    );
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("synth.json"))?)?;
    assert_eq!(truth["classes"].as_array().map(|a| a.len()), Some(10));
    Ok(())
}

#[test]
fn bad_settings_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [
        SynthConfig {
            classes: 1,
            ..small(0)
        },
        SynthConfig {
            classes: 500,
            ..small(0)
        },
        SynthConfig {
            per_class: 1,
            ..small(0)
        },
        SynthConfig {
            size: 8,
            ..small(0)
        },
        SynthConfig {
            train_fraction: 1.0,
            ..small(0)
        },
        SynthConfig {
            occlusion: 1.5,
            ..small(0)
        },
        SynthConfig {
            occlusion: f32::NAN,
            ..small(0)
        },
        SynthConfig {
            max_rotation: 4.0,
            ..small(0)
        },
        SynthConfig {
            parts: 8,
            ..small(0)
        },
        SynthConfig {
            parts: 4,
            ..small(0)
        },
    ] {
        assert!(
            generate(&cfg, dir.path(), &mut |_, _| {}).is_err(),
            "{cfg:?}"
        );
    }
}

#[test]
fn loader_batches_are_deterministic() -> anyhow::Result<()> {
    use prototree_data::{Augmentation, Loader, LoaderConfig, Normalization};
    let dir = tempfile::tempdir()?;
    generate(&small(1), dir.path(), &mut |_, _| {})?;
    let ds = CubDataset::open(dir.path())?;
    let cfg = LoaderConfig {
        batch_size: 8,
        image_size: 32,
        crop_to_bbox: true,
        augmentation: Augmentation::Reference,
        normalization: Normalization::IMAGENET,
        shuffle: true,
        drop_last: false,
    };
    let mut calls = 0;
    let loader = Loader::new(ds.samples(Split::Train), cfg, &mut |_, _| calls += 1)?;
    assert!(calls >= 1);
    assert_eq!(loader.num_batches(), 3); // 20 images, batches of 8
    let a: Vec<_> = loader.epoch(5).collect();
    let b: Vec<_> = loader.epoch(5).collect();
    let c: Vec<_> = loader.epoch(6).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a[0].images.len(), 8 * 3 * 32 * 32);
    assert_eq!(a[2].batch_size, 4);
    for batch in &a {
        for (label, &i) in batch.labels.iter().zip(&batch.sample_indices) {
            assert_eq!(*label as usize, loader.samples()[i].class_index);
        }
    }
    Ok(())
}

#[test]
fn occluders_hide_parts_from_the_mask_and_the_keypoints() -> anyhow::Result<()> {
    // Every image gets an occluder over one of its parts: fewer part pixels in the masks
    // and fewer visible keypoints than the same set without occluders (same classes and
    // poses up to the occluder's draws, which come after the pose).
    let count = |occlusion: f32| -> anyhow::Result<(usize, usize)> {
        let dir = tempfile::tempdir()?;
        let cfg = SynthConfig {
            occlusion,
            ..small(5)
        };
        generate(&cfg, dir.path(), &mut |_, _| {})?;
        let mut part_pixels = 0;
        let masks = files(&dir.path().join("segmentations"));
        for (_, bytes) in masks.iter().filter(|(name, _)| name.ends_with(".png")) {
            let mask = image::load_from_memory(bytes)?.to_luma8();
            // Labels 0 background, 1 body, 2.. parts.
            part_pixels += mask.pixels().filter(|p| p[0] >= 2).count();
        }
        let locs = std::fs::read_to_string(dir.path().join("parts/part_locs.txt"))?;
        let visible = locs
            .lines()
            .filter(|l| l.split_whitespace().nth(4) == Some("1"))
            .count();
        Ok((part_pixels, visible))
    };
    let (clear_pixels, clear_visible) = count(0.0)?;
    let (hidden_pixels, hidden_visible) = count(1.0)?;
    assert!(
        hidden_pixels < clear_pixels,
        "{hidden_pixels} vs {clear_pixels}"
    );
    assert!(
        hidden_visible < clear_visible,
        "{hidden_visible} vs {clear_visible}"
    );
    Ok(())
}

#[test]
fn more_parts_draw_a_breast_and_legs_with_their_own_labels_and_keypoints() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = SynthConfig {
        parts: 7,
        classes: 12,
        per_class: 3,
        size: 64,
        ..small(3)
    };
    generate(&cfg, dir.path(), &mut |_, _| {})?;
    let parts = std::fs::read_to_string(dir.path().join("parts/parts.txt"))?;
    assert_eq!(
        parts.lines().collect::<Vec<_>>(),
        ["1 crest", "2 beak", "3 eye", "4 wing", "5 tail", "6 breast", "7 legs"]
    );
    let labels = std::fs::read_to_string(dir.path().join("segmentations/labels.txt"))?;
    assert!(labels.ends_with("7 breast\n8 legs\n"), "{labels}");
    let truth: prototree_data::synth::SynthTruth =
        serde_json::from_slice(&std::fs::read(dir.path().join("synth.json"))?)?;
    assert_eq!(truth.config.parts, 7);
    assert!(truth.classes.iter().all(|(_, v)| v.len() == 7));
    // Seven keypoints per image; the legs are always there, a plain breast (variant 0)
    // never is.
    let locs = std::fs::read_to_string(dir.path().join("parts/part_locs.txt"))?;
    let images = 12 * 3;
    assert_eq!(locs.lines().count(), images * 7);
    let class_of = |image: usize| (image - 1) / 3;
    for line in locs.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (image, part, visible): (usize, usize, &str) = (f[0].parse()?, f[1].parse()?, f[4]);
        if part == 6 && truth.classes[class_of(image)].1[5] == 0 {
            assert_eq!(visible, "0", "{line}");
        }
    }
    // Mask pixels of the breast (label 7) only in classes with a breast patch; legs
    // (label 8) in every image.
    let masks = files(&dir.path().join("segmentations"));
    let mut with_legs = 0;
    for (name, bytes) in masks.iter().filter(|(name, _)| name.ends_with(".png")) {
        let mask = image::load_from_memory(bytes)?.to_luma8();
        let class: usize = name[..3].parse::<usize>()? - 1;
        let breast = mask.pixels().filter(|p| p[0] == 7).count();
        let legs = mask.pixels().filter(|p| p[0] == 8).count();
        if truth.classes[class].1[5] == 0 {
            assert_eq!(breast, 0, "{name}");
        } else {
            assert!(breast > 0, "{name}");
        }
        with_legs += usize::from(legs > 0);
    }
    // A leg can leave the 64-px frame; nearly every image shows one.
    assert!(with_legs * 10 >= images * 9, "{with_legs} of {images}");
    Ok(())
}

#[test]
fn five_parts_stay_the_default_and_leave_synth_json_as_it_was() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    generate(&small(1), dir.path(), &mut |_, _| {})?;
    let json = std::fs::read_to_string(dir.path().join("synth.json"))?;
    assert!(!json.contains("\"parts\": 5"), "{json}");
    let truth: prototree_data::synth::SynthTruth = serde_json::from_str(&json)?;
    assert_eq!(truth.config.parts, 5);
    assert_eq!(truth.parts.len(), 5);
    Ok(())
}
