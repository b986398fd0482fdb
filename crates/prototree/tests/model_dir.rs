//! The model-directory workflow (`ModelDir`): each step keeps the bundle consistent and
//! the stage follows from what was done, across saving and reopening.

use prototree::candle_core::Device;
use prototree::prelude::*;
use prototree::tree::ModelStage;

mod common;
use common::fixtures;

#[test]
fn prune_project_save_reopen_export() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = fixtures().join("cub-tiny");
    // Yesterday's projected model: two decisions with records.
    let mut dir = ModelDir::open(
        &fixtures().join("models/main-2026-12-01/projected"),
        &Device::Cpu,
    )?;
    assert_eq!(dir.stage(), ModelStage::Projected);
    assert_eq!(dir.model().projections().len(), 2);
    let before = dir.evaluate(&data, &mut ())?;

    // Pruning everything prunable (tau 1): records of removed nodes go; the remaining
    // prototypes are still projected ones, so the stage stays projected.
    let report = dir.prune(1.0)?;
    assert!(report.decisions_after <= report.decisions_before);
    assert_eq!(dir.stage(), ModelStage::Projected);
    let live = dir.model().model.topology().num_decisions();
    assert!(dir.model().projections().len() <= live);

    // Projecting again records one projection per live decision.
    let records = dir.project(&data, &mut ())?.len();
    assert_eq!(records, live);
    let out = tmp.path().join("projected");
    dir.save(&out)?;
    assert_eq!(dir.path(), out.as_path());
    let reopened = ModelDir::open(&out, &Device::Cpu)?;
    assert_eq!(reopened.stage(), ModelStage::Projected);
    assert_eq!(reopened.model().projections(), dir.model().projections());
    let after = reopened.evaluate(&data, &mut ())?;
    assert_eq!(after.num_images, before.num_images);

    let svg = tmp.path().join("tree.svg");
    let exported = reopened.export(ExportFormat::Svg, &svg)?;
    assert_eq!(exported.num_decisions, live);
    assert!(std::fs::read_to_string(&svg)?.contains("<svg"));
    let opts = prototree::report::ReportOptions {
        explain: 1,
        ..Default::default()
    };
    let html = reopened.report(Some(&data), &tmp.path().join("report.html"), &opts, &mut ())?;
    let page = std::fs::read_to_string(html)?;
    assert!(page.contains("<html"));
    // With a data set, every projected prototype's card shows its training patches.
    assert_eq!(
        page.matches("most similar training patches:").count(),
        reopened.model().projections().len()
    );
    Ok(())
}

#[test]
fn a_trained_model_pruned_then_saved_reads_back_pruned() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tree = prototree::tree::testing::small_cnn_tree(3, 4, 3, 0)?;
    let meta = prototree::tree::ModelMeta {
        format_version: prototree::tree::io::FORMAT_VERSION,
        tree: tree.config().config().clone(),
        class_names: vec!["a".into(), "b".into(), "c".into()],
        preprocessing: prototree::tree::io::Preprocessing {
            image_size: 32,
            mean: [0.5; 3],
            std: [0.5; 3],
        },
        train: None,
    };
    let path = tmp.path().join("trained");
    prototree::tree::SavedModel::new(tree, meta).save(&path)?;
    let mut dir = ModelDir::open(&path, &Device::Cpu)?;
    assert_eq!(dir.stage(), ModelStage::Trained);
    // Uniform leaves (a fresh tree): everything below the root is prunable.
    dir.prune(0.5)?;
    assert_eq!(dir.stage(), ModelStage::Pruned);
    dir.save(&tmp.path().join("pruned"))?;
    assert_eq!(
        ModelDir::open(&tmp.path().join("pruned"), &Device::Cpu)?.stage(),
        ModelStage::Pruned
    );
    Ok(())
}
