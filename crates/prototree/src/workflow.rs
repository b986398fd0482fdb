//! Turning a trained tree into an interpretable one: pruning and prototype projection,
//! on models in memory and on model directories.

use std::path::Path;

use candle_core::Device;
use prototree_data::{Augmentation, Dataset, Loader, LoaderConfig, Protocol, Role, Split};
use prototree_interpret::{Interpret, ProjectionRule, PruneReport};
use prototree_tree::io::ProjectionRecord;
use prototree_tree::{evaluate, load_model, EvalReport, ProtoTree, SavedModel};

use crate::source::LoaderSource;
use crate::{Error, Result};
use prototree_tree::{Observer, Stage};

/// File next to a pruned model holding its [`PruneOutcome`] (JSON).
pub const PRUNING_FILE: &str = "pruning.json";

/// Writes `outcome` to [`PRUNING_FILE`] in `dir`.
pub fn write_pruning(dir: &Path, outcome: &PruneOutcome) -> Result<()> {
    let json = serde_json::to_vec_pretty(outcome).map_err(|e| Error::Invalid(e.to_string()))?;
    prototree_tree::io::write_atomic(&dir.join(PRUNING_FILE), &json)?;
    Ok(())
}

/// Projects the prototypes of `saved` onto the images of `loader` (which must not
/// shuffle) by `rule`; the bundle keeps the records.
pub fn project_on_loader(
    saved: &mut SavedModel,
    loader: &Loader,
    device: &Device,
    rule: ProjectionRule,
    obs: &mut dyn Observer,
) -> Result<()> {
    if loader.config().shuffle {
        return Err(Error::Invalid(
            "projection needs an unshuffled loader".into(),
        ));
    }
    let paths: Vec<String> = (0..loader.len())
        .filter_map(|i| loader.image_ref(i))
        .collect();
    let mut source = LoaderSource::new(loader, device, 0);
    let passes = match rule {
        ProjectionRule::Nearest => 1,
        ProjectionRule::Specific { .. } => 2,
    };
    obs.stage_started(Stage::Project, passes * loader.num_batches());
    saved.project(&mut source, &paths, rule, &mut |done, _| {
        obs.stage_progress(done)
    })?;
    obs.stage_finished(Stage::Project);
    Ok(())
}

/// A loader over `split` of a data set (CUB or ImageFolder layout), whole images, with a
/// model's preprocessing and no augmentation or shuffling.
pub fn eval_loader(
    data_dir: &Path,
    split: Split,
    meta: &prototree_tree::ModelMeta,
    batch_size: usize,
    obs: &mut dyn Observer,
) -> Result<(Dataset, Loader)> {
    // The plain protocol without box crops: every image whole.
    views_loader(
        data_dir,
        split,
        Protocol::Plain,
        Role::Test,
        meta,
        batch_size,
        obs,
    )
}

/// The loader prototypes are projected onto: the training images as the model's data
/// protocol shows them to projection (for the reference protocol, cropped to their
/// bounding boxes), with its preprocessing, not shuffled.
pub fn projection_loader(
    data_dir: &Path,
    meta: &prototree_tree::ModelMeta,
    batch_size: usize,
    obs: &mut dyn Observer,
) -> Result<(Dataset, Loader)> {
    let protocol = meta.protocol();
    views_loader(
        data_dir,
        Split::Train,
        protocol,
        Role::Projection,
        meta,
        batch_size,
        obs,
    )
}

/// A loader of the views `protocol` takes of each image of `split` for the set `role`,
/// with `meta`'s preprocessing and no augmentation or shuffling.
fn views_loader(
    data_dir: &Path,
    split: Split,
    protocol: Protocol,
    role: Role,
    meta: &prototree_tree::ModelMeta,
    batch_size: usize,
    obs: &mut dyn Observer,
) -> Result<(Dataset, Loader)> {
    let dataset = Dataset::open(data_dir)?;
    if dataset.num_classes() != meta.class_names.len() {
        return Err(Error::Mismatch(format!(
            "{}: the data set has {} classes but the model was trained on {}",
            data_dir.display(),
            dataset.num_classes(),
            meta.class_names.len()
        )));
    }
    let samples = dataset.samples(split);
    if samples.is_empty() {
        return Err(Error::Mismatch(format!(
            "{}: no images in the {split:?} split",
            data_dir.display()
        )));
    }
    let p = meta.preprocessing;
    let cfg = LoaderConfig {
        batch_size: batch_size.max(1),
        image_size: p.image_size,
        crop_to_bbox: false,
        augmentation: Augmentation::None,
        normalization: p.normalization(),
        shuffle: false,
        drop_last: false,
    };
    obs.stage_started(Stage::LoadImages, samples.len());
    let samples = protocol.view_list(role, samples, false);
    let loader = Loader::with_views(samples, cfg, &mut |done, _| obs.stage_progress(done))?;
    obs.stage_finished(Stage::LoadImages);
    Ok((dataset, loader))
}

/// Evaluates `model` on `loader`.
pub fn evaluate_on(
    model: &ProtoTree,
    loader: &Loader,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<EvalReport> {
    let mut source = LoaderSource::new(loader, device, 0);
    obs.stage_started(Stage::Evaluate, loader.num_batches());
    let report = evaluate(model, &mut source, obs)?;
    obs.stage_finished(Stage::Evaluate);
    Ok(report)
}

/// The result of pruning a model directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneOutcome {
    /// What pruning removed.
    pub report: PruneReport,
    /// Test evaluation before pruning, when a data set was given.
    pub before: Option<EvalReport>,
    /// Test evaluation after pruning, when a data set was given.
    pub after: Option<EvalReport>,
}

/// Prunes the model in `model_dir` with `tau` (then, with `merge_same_class`, merges the
/// decisions whose leaves all predict one class) and saves it to `out`; with `data`,
/// reports test accuracy before and after.
pub fn prune_model_dir(
    model_dir: &Path,
    tau: f32,
    steps: PruneSteps,
    out: &Path,
    data: Option<&Path>,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<PruneOutcome> {
    if steps.collapse_constant && data.is_none() {
        return Err(Error::Invalid(
            "collapsing constant decisions needs a data set: its training images show which \
             decisions every image answers alike"
                .into(),
        ));
    }
    let mut saved = load_model(model_dir, device)?;
    let loader = match data {
        Some(d) => Some(eval_loader(d, Split::Test, &saved.meta, 64, obs)?.1),
        None => None,
    };
    let before = match &loader {
        Some(l) => Some(evaluate_on(&saved.model, l, device, obs)?),
        None => None,
    };
    obs.stage_started(Stage::Prune, 0);
    let mut report = prune_and_merge(&mut saved, tau, steps.merge_same_class)?;
    obs.stage_finished(Stage::Prune);
    if let (true, Some(d)) = (steps.collapse_constant, data) {
        let (_, train) = projection_loader(d, &saved.meta, 64, obs)?;
        collapse_on_loader(&mut saved, &mut report, &train, device, obs)?;
    }
    let after = match &loader {
        Some(l) => Some(evaluate_on(&saved.model, l, device, obs)?),
        None => None,
    };
    saved.save(out)?;
    let outcome = PruneOutcome {
        report,
        before,
        after,
    };
    write_pruning(out, &outcome)?;
    Ok(outcome)
}

/// What pruning does besides removing near-uniform subtrees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneSteps {
    /// Merge decisions whose leaves all predict one class ([`prototree_interpret::merge`]).
    pub merge_same_class: bool,
    /// Then collapse decisions every training image answers alike
    /// ([`prototree_interpret::collapse`]; needs the data set).
    pub collapse_constant: bool,
}

/// Prunes `saved` with `tau` and, with `merge_same_class`, merges the decisions whose
/// leaves all predict one class ([`prototree_interpret::merge`]); one report for both.
pub fn prune_and_merge(
    saved: &mut SavedModel,
    tau: f32,
    merge_same_class: bool,
) -> Result<PruneReport> {
    let mut report = saved.prune(tau)?;
    if merge_same_class {
        let merged = saved.merge_same_class()?;
        report.record_merge(merged, saved.model.topology());
    }
    Ok(report)
}

/// Collapses the decisions of `saved` that every image of `loader` (the training images
/// as projection sees them: [`projection_loader`]) answers alike
/// ([`prototree_interpret::collapse`]) and records them in `report`. Reports
/// [`Stage::Prune`] progress over the batches.
pub fn collapse_on_loader(
    saved: &mut SavedModel,
    report: &mut PruneReport,
    loader: &Loader,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<()> {
    obs.stage_started(Stage::Prune, loader.num_batches());
    let collapsed = saved
        .collapse_constant(&mut LoaderSource::new(loader, device, 0), &mut |done, _| {
            obs.stage_progress(done)
        })?;
    obs.stage_finished(Stage::Prune);
    report.record_collapse(collapsed, saved.model.topology());
    Ok(())
}

/// The result of projecting a model directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectOutcome {
    /// Number of projected prototypes.
    pub projected: usize,
    /// Mean distance between the learnt prototypes and their nearest patches.
    pub mean_distance: f64,
    /// Test evaluation after projection.
    pub after: EvalReport,
}

/// Projects the model in `model_dir` onto the training images of `data` (as its data
/// protocol shows them to projection) by `rule` and saves it to
/// `out`, with the projection records; evaluates on the test split.
pub fn project_model_dir(
    model_dir: &Path,
    data: &Path,
    out: &Path,
    device: &Device,
    rule: ProjectionRule,
    obs: &mut dyn Observer,
) -> Result<ProjectOutcome> {
    let mut saved = load_model(model_dir, device)?;
    let (_, train) = projection_loader(data, &saved.meta, 64, obs)?;
    project_on_loader(&mut saved, &train, device, rule, obs)?;
    let records = saved.projections();
    let (_, test) = eval_loader(data, Split::Test, &saved.meta, 64, obs)?;
    let after = evaluate_on(&saved.model, &test, device, obs)?;
    saved.save(out)?;
    // Pruning statistics travel with the model.
    let pruning = model_dir.join(PRUNING_FILE);
    if pruning.is_file() && model_dir != out {
        std::fs::copy(&pruning, out.join(PRUNING_FILE)).map_err(|source| Error::Io {
            path: pruning.clone(),
            source,
        })?;
    }
    let mean_distance = mean_projection_distance(records);
    Ok(ProjectOutcome {
        projected: records.len(),
        mean_distance,
        after,
    })
}

/// Mean distance between the learnt prototypes and their nearest patches (0 without records).
pub fn mean_projection_distance(records: &[ProjectionRecord]) -> f64 {
    if records.is_empty() {
        return 0.0;
    }
    records.iter().map(|r| f64::from(r.distance)).sum::<f64>() / records.len() as f64
}
