//! Ensembles of trees: training members that differ by seed, and evaluating each member
//! and the ensemble (mean of the members' distributions) on a test split.

use std::path::{Path, PathBuf};

use candle_core::Device;
use prototree_data::Split;
use prototree_tree::{load_model, BatchSource, Ensemble, EvalReport};
use serde::Serialize;

use crate::run_config::RunConfig;
use crate::source::LoaderSource;
use crate::train::train;
use crate::workflow::{eval_loader, evaluate_on};
use crate::{Error, Result};
use prototree_learn::{Interrupter, RunMode};
use prototree_tree::{Observer, Stage};

/// Trains `n` trees with the configuration `cfg` into `out/tree_1` … `out/tree_n`; member
/// `i` uses seed `cfg.schedule.seed + i − 1` and trains once on all training images (the
/// members are already several seeds, so [`RunConfig::attempts`] does not apply); `mode`
/// applies to every member's run directory. Returns the members' directories.
pub fn train_ensemble(
    cfg: &RunConfig,
    n: usize,
    out: &Path,
    mode: RunMode,
    device: &Device,
    interrupter: &Interrupter,
    obs: &mut dyn Observer,
) -> Result<Vec<PathBuf>> {
    if n == 0 {
        return Err(Error::Invalid("an ensemble needs at least one tree".into()));
    }
    let mut dirs = Vec::with_capacity(n);
    for i in 1..=n {
        let mut member = cfg.clone();
        member.schedule.seed = cfg.schedule.seed.wrapping_add(i as u64 - 1);
        member.attempts = 1;
        let dir = out.join(format!("tree_{i}"));
        obs.message(&format!("ensemble member {i}/{n} → {}", dir.display()));
        train(&member, &dir, mode, device, interrupter, obs)?;
        dirs.push(dir);
    }
    Ok(dirs)
}

/// One member's evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    /// The member's model directory.
    pub model: PathBuf,
    /// Prototypes in use.
    pub num_prototypes: usize,
    /// Its evaluation (all routing modes).
    pub eval: EvalReport,
}

/// The evaluation of an ensemble.
#[derive(Debug, Clone, Serialize)]
pub struct EnsembleReport {
    /// Every member.
    pub members: Vec<MemberReport>,
    /// Test images.
    pub num_images: usize,
    /// Accuracy of the ensemble (argmax of the mean soft distribution).
    pub accuracy: f64,
    /// Mean of the members' soft accuracies.
    pub mean_member_accuracy: f64,
    /// Prototypes summed over the members.
    pub total_prototypes: usize,
}

/// Evaluates the models in `model_dirs` and their ensemble on the test split of `data`.
pub fn evaluate_ensemble(
    model_dirs: &[PathBuf],
    data: &Path,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<EnsembleReport> {
    let mut saved = Vec::with_capacity(model_dirs.len());
    for dir in model_dirs {
        saved.push(load_model(dir, device)?);
    }
    let Some(first) = saved.first() else {
        return Err(Error::Invalid("no models given".into()));
    };
    for (s, dir) in saved.iter().zip(model_dirs) {
        if s.meta.class_names != first.meta.class_names {
            return Err(Error::Mismatch(format!(
                "{}: its classes differ from those of {}",
                dir.display(),
                model_dirs[0].display()
            )));
        }
        if s.meta.preprocessing != first.meta.preprocessing {
            return Err(Error::Mismatch(format!(
                "{}: its input preprocessing differs from that of {}",
                dir.display(),
                model_dirs[0].display()
            )));
        }
    }
    let (_, loader) = eval_loader(data, Split::Test, &first.meta, 64, obs)?;
    let mut members = Vec::with_capacity(saved.len());
    for (s, dir) in saved.iter().zip(model_dirs) {
        members.push(MemberReport {
            model: dir.clone(),
            num_prototypes: s.model.topology().num_decisions(),
            eval: evaluate_on(&s.model, &loader, device, obs)?,
        });
    }
    let ensemble = Ensemble::new(saved.into_iter().map(|s| s.model).collect())?;
    let mut source = LoaderSource::new(&loader, device, 0);
    let (mut correct, mut seen) = (0usize, 0usize);
    obs.stage_started(Stage::Evaluate, source.num_batches());
    for (i, batch) in source.batches(0).enumerate() {
        let batch = batch?;
        let predicted = ensemble
            .probabilities(&batch.images)?
            .argmax(1)?
            .to_vec1::<u32>()?;
        let labels = batch.labels.to_vec1::<u32>()?;
        correct += predicted
            .iter()
            .zip(&labels)
            .filter(|(p, y)| p == y)
            .count();
        seen += labels.len();
        obs.stage_progress(i + 1);
    }
    obs.stage_finished(Stage::Evaluate);
    let mean_member_accuracy =
        members.iter().map(|m| m.eval.accuracy_soft).sum::<f64>() / members.len() as f64;
    Ok(EnsembleReport {
        num_images: seen,
        accuracy: if seen == 0 {
            0.0
        } else {
            correct as f64 / seen as f64
        },
        mean_member_accuracy,
        total_prototypes: ensemble.num_prototypes(),
        members,
    })
}
