//! The data protocols end to end on the committed CUB-layout fixture: what a run trains
//! on, what it records, what projection is run on, and what resuming keeps.

mod common;

use prototree::data::{parse_image_ref, Dataset, Protocol, Split};
use prototree::prelude::*;
use prototree::train::load_data;

/// The bounding box of each image of the fixture, by image path, rounded as Pillow's crop
/// rounds (the fixture's boxes are whole pixels).
fn boxes(data: &std::path::Path) -> anyhow::Result<Vec<(String, [u32; 4])>> {
    let ds = Dataset::open(data)?;
    Ok(ds
        .samples(Split::Train)
        .iter()
        .filter_map(|s| {
            let b = s.bbox?;
            Some((
                s.path.display().to_string(),
                [b.x, b.y, b.width, b.height].map(|v| v.round() as u32),
            ))
        })
        .collect())
}

#[test]
fn a_new_run_trains_on_the_reference_views_and_projects_on_box_crops() -> anyhow::Result<()> {
    let data = common::fixtures().join("cub-tiny");
    let cfg = common::small_job(&data);
    assert_eq!(cfg.schedule.protocol, None);

    // Five views of every training image (whole, four corner crops), test images whole.
    let settled = cfg.settled(true);
    let loaded = load_data(&settled, &mut ())?;
    let n_train = loaded.dataset.samples(Split::Train).len();
    let n_test = loaded.dataset.samples(Split::Test).len();
    assert_eq!(loaded.train.len(), 5 * n_train);
    assert_eq!(loaded.test.len(), n_test);
    assert!((0..loaded.test.len()).all(|i| loaded.test.crop(i).is_none()));
    let crops = (0..loaded.train.len())
        .filter(|&i| loaded.train.crop(i).is_some())
        .count();
    assert_eq!(crops, 4 * n_train, "four corner crops per boxed image");

    // The run records the protocol and the grouping it used.
    let dir = tempfile::tempdir()?;
    let run = dir.path().join("run");
    common::run(&cfg, &run)?;
    let toml = std::fs::read_to_string(run.join("run.toml"))?;
    assert!(toml.contains("protocol = \"reference\""), "{toml}");
    assert!(toml.contains("last_block_with_addon = false"), "{toml}");
    let mut model = ModelDir::open(&run, &prototree::candle_core::Device::Cpu)?;
    assert_eq!(model.model().meta.protocol(), Protocol::Reference);

    // Projection runs on the bounding-box crops and names them.
    let records = model.project(&data, &mut ())?.to_vec();
    assert!(!records.is_empty());
    let boxes = boxes(&data)?;
    for r in &records {
        let (path, crop) = parse_image_ref(&r.image_path);
        let crop = crop.ok_or_else(|| anyhow::anyhow!("{} is not a crop", r.image_path))?;
        let (_, b) = boxes
            .iter()
            .find(|(p, _)| *p == path.display().to_string())
            .ok_or_else(|| anyhow::anyhow!("{} is not a training image", path.display()))?;
        assert_eq!(
            [crop.left, crop.top, crop.width(), crop.height()],
            *b,
            "{}",
            r.image_path
        );
    }
    // The projected model saves and reloads, and its report finds the crops' pixels.
    let out = dir.path().join("projected");
    model.save(&out)?;
    let reloaded = ModelDir::open(&out, &prototree::candle_core::Device::Cpu)?;
    let (pictures, missing) = prototree::prototype_picture::prototype_pictures(reloaded.model())?;
    assert!(missing.is_empty(), "{missing:?}");
    assert_eq!(pictures.len(), records.len());
    Ok(())
}

#[test]
fn the_plain_protocol_takes_each_image_once_and_refuses_to_change_on_resume() -> anyhow::Result<()>
{
    let data = common::fixtures().join("cub-tiny");
    let mut cfg = common::small_job(&data);
    cfg.schedule.protocol = Some(Protocol::Plain);
    let loaded = load_data(&cfg.settled(true), &mut ())?;
    assert_eq!(
        loaded.train.len(),
        loaded.dataset.samples(Split::Train).len()
    );
    // With crop_to_bbox every image is its box, training and test alike.
    cfg.crop_to_bbox = true;
    let loaded = load_data(&cfg.settled(true), &mut ())?;
    assert!((0..loaded.train.len()).all(|i| loaded.train.crop(i).is_some()));
    assert!((0..loaded.test.len()).all(|i| loaded.test.crop(i).is_some()));
    // crop_to_bbox is the plain protocol's: with the reference protocol it is refused.
    let dir = tempfile::tempdir()?;
    let mut reference = cfg.clone();
    reference.schedule.protocol = Some(Protocol::Reference);
    let err = common::run(&reference, &dir.path().join("r"))
        .map(|_| ())
        .err();
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("crop_to_bbox"), "{msg}");

    // A run resumed with the configuration it started from, unset settings and all,
    // keeps what it recorded.
    let mut reference = common::small_job(&data);
    let run = dir.path().join("reference");
    common::run(&reference, &run)?;
    reference.schedule.epochs += 1;
    train(
        &reference,
        &run,
        RunMode::Resume,
        &prototree::candle_core::Device::Cpu,
        &Interrupter::new(),
        &mut (),
    )?;
    let toml = std::fs::read_to_string(run.join("run.toml"))?;
    assert!(toml.contains("protocol = \"reference\""), "{toml}");

    // A finished plain run extended under another protocol is refused.
    cfg.crop_to_bbox = false;
    let run = dir.path().join("plain");
    common::run(&cfg, &run)?;
    let mut other = RunConfig::from_file(&run.join("run.toml"))?;
    other.schedule.epochs += 1;
    other.schedule.protocol = Some(Protocol::Reference);
    let resumed = train(
        &other,
        &run,
        RunMode::Resume,
        &prototree::candle_core::Device::Cpu,
        &Interrupter::new(),
        &mut (),
    );
    let msg = resumed
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("protocol"), "{msg}");
    Ok(())
}

#[test]
fn settling_fills_new_runs_with_the_reference_and_old_runs_with_what_they_did() {
    let mut cfg = RunConfig {
        backbone: BackboneKind::Resnet18,
        ..RunConfig::default()
    };
    let new = cfg.settled(true).schedule;
    assert_eq!(
        (new.protocol, new.last_block_with_addon),
        (Some(Protocol::Reference), Some(false))
    );
    cfg.backbone = BackboneKind::Resnet50Inat;
    assert_eq!(cfg.settled(true).schedule.last_block_with_addon, Some(true));
    let old = cfg.settled(false).schedule;
    assert_eq!(
        (old.protocol, old.last_block_with_addon),
        (Some(Protocol::Plain), Some(true))
    );
    // crop_to_bbox alone asks for the plain protocol.
    let mut cropped = cfg.clone();
    cropped.crop_to_bbox = true;
    assert_eq!(
        cropped.settled(true).schedule.protocol,
        Some(Protocol::Plain)
    );
    // Settings that are given are kept.
    cfg.schedule.protocol = Some(Protocol::Plain);
    cfg.schedule.last_block_with_addon = Some(false);
    assert_eq!(cfg.settled(true).schedule, cfg.schedule);
}
