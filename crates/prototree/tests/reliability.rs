//! Faults a user can meet: unusual and broken images in a data set, a NaN during
//! training, a model that does not fit the data.

use std::path::{Path, PathBuf};

use image::{ImageBuffer, Luma, Rgba};
use prototree::candle_core::Device;
use prototree::learn::load_checkpoint;
use prototree::train::{last_checkpoint_dir, SKIPPED_IMAGES_FILE};

mod common;
use common::{fixtures, run, small_job as job};

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The images of a CUB-layout data set, in `images.txt` order.
fn image_paths(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(std::fs::read_to_string(root.join("images.txt"))?
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|rel| root.join("images").join(rel))
        .collect())
}

#[test]
fn unusual_images_are_converted_and_broken_ones_fail_or_are_skipped() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    copy_dir(&fixtures().join("cub-tiny"), &data)?;
    let paths = image_paths(&data)?;
    // Valid but unusual: grayscale, RGBA, 16-bit grayscale PNG, CMYK JPEG (the file keeps
    // its .png name: formats are detected from the content).
    let gray = image::open(&paths[0])?.to_luma8();
    gray.save_with_format(&paths[0], image::ImageFormat::Png)?;
    let rgba: ImageBuffer<Rgba<u8>, _> = image::open(&paths[1])?.to_rgba8();
    rgba.save_with_format(&paths[1], image::ImageFormat::Png)?;
    let g16: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(32, 32, |x, y| Luma([((x * 2000 + y * 7) % 65535) as u16]));
    g16.save_with_format(&paths[2], image::ImageFormat::Png)?;
    std::fs::copy(fixtures().join("images/cmyk.jpg"), &paths[3])?;
    let ok = run(&job(&data), &dir.path().join("ok"))?;
    assert_eq!(ok.test.num_images, 6);

    // Broken: truncated, empty, not an image.
    let bytes = std::fs::read(&paths[4])?;
    std::fs::write(&paths[4], &bytes[..bytes.len() / 3])?;
    std::fs::write(&paths[5], b"")?;
    std::fs::write(&paths[6], b"this is not an image")?;
    let err = run(&job(&data), &dir.path().join("fail")).unwrap_err();
    let msg = err.to_string();
    assert!(
        [&paths[4], &paths[5], &paths[6]]
            .iter()
            .any(|p| msg.contains(&p.display().to_string())),
        "error does not name the file: {msg}"
    );
    let mut skipping = job(&data);
    skipping.skip_bad_images = true;
    let skipped = run(&skipping, &dir.path().join("skip"))?;
    let listed = std::fs::read_to_string(dir.path().join("skip").join(SKIPPED_IMAGES_FILE))?;
    assert_eq!(listed.lines().count(), 3, "{listed}");
    for p in &paths[4..7] {
        assert!(listed.contains(&p.display().to_string()));
    }
    assert!(skipped.test.num_images <= 6);
    Ok(())
}

#[test]
fn non_finite_training_stops_with_a_diagnostic_and_keeps_the_last_checkpoint() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("run");
    let mut j = job(&fixtures().join("cub-tiny"));
    // The weights explode after the first epoch, each rate within its limit: AdamW's
    // decoupled decay multiplies every weight by 1 - lr * weight_decay per step, 0.9 in
    // the first epoch (lr 1e-4), -99 from the second (lr 0.1). The first value to go
    // non-finite may be a BatchNorm running variance while the loss and the gradients
    // are still finite: the learner checks before it checkpoints.
    j.schedule.epochs = 6;
    j.schedule.lr = 1e-4;
    j.schedule.lr_block = 1e-4;
    j.schedule.lr_net = 1e-4;
    j.schedule.weight_decay = 1000.0;
    j.schedule.milestones = vec![1];
    j.schedule.gamma = 1000.0;
    let err = run(&j, &out).unwrap_err().to_string();
    assert!(err.contains("non-finite"), "{err}");
    // The diagnostic names the parameter and its group (or says it is a statistic).
    assert!(err.contains('`') && err.contains('('), "{err}");
    // The last checkpoint loads (its weights are finite) and is of the epoch before the
    // one the error names.
    let ck = load_checkpoint(&last_checkpoint_dir(&out), &Device::Cpu)?;
    let done = ck.state.epochs_done;
    assert!((1..6).contains(&done), "{done}");
    assert!(
        err.contains(&format!("epoch {}", done + 1)),
        "{err} (checkpoint of epoch {done})"
    );
    Ok(())
}

#[test]
fn a_model_that_does_not_fit_the_data_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let model = dir.path().join("model");
    run(&job(&fixtures().join("cub-tiny")), &model)?;
    // Another data set with 12 classes.
    let other = dir.path().join("other");
    let cfg = prototree::data::SynthConfig {
        classes: 12,
        per_class: 2,
        size: 32,
        seed: 1,
        train_fraction: 0.5,
        ..Default::default()
    };
    prototree::data::generate(&cfg, &other, &mut |_, _| {})?;
    let err = prototree::eval::evaluate_dir(&model, &other, 8, &Device::Cpu, &mut ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("12 classes") && err.contains("3"), "{err}");
    Ok(())
}

#[test]
fn attempts_without_images_to_hold_out_train_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    copy_dir(&fixtures().join("cub-tiny"), &data)?;
    // One training image per class: nothing can be held out for a validation split.
    let labels = std::fs::read_to_string(data.join("image_class_labels.txt"))?;
    let split = std::fs::read_to_string(data.join("train_test_split.txt"))?;
    let mut seen = std::collections::HashSet::new();
    let mut rewritten = String::new();
    for (label, line) in labels.lines().zip(split.lines()) {
        let mut fields = line.split_whitespace();
        let (id, is_train) = (fields.next().unwrap_or(""), fields.next() == Some("1"));
        let class = label.split_whitespace().nth(1).unwrap_or("");
        let keep = is_train && seen.insert(class.to_string());
        rewritten.push_str(&format!("{id} {}\n", u8::from(keep)));
    }
    assert_eq!(seen.len(), 3);
    std::fs::write(data.join("train_test_split.txt"), rewritten)?;
    let cfg = prototree::prelude::RunConfig {
        attempts: 3,
        ..job(&data)
    };
    let out = dir.path().join("run");
    let trained = run(&cfg, &out)?;
    assert!(!out.join(prototree::attempts::ATTEMPTS_FILE).exists());
    assert!(!out.join(prototree::attempts::ATTEMPTS_DIR).exists());
    assert_eq!(trained.test.num_images, 24 - 3);
    Ok(())
}
