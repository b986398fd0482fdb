//! Evaluating a saved model directory on a data set's test split: accuracy of the three
//! routing modes, fidelity, and per-class accuracy and confusion matrix of one mode.

use std::path::Path;

use candle_core::Device;
use prototree_data::Split;
use prototree_tree::{load_model, BatchSource, EvalReport, Routing, SavedModel};
use serde::Serialize;

use crate::source::LoaderSource;
use crate::workflow::{eval_loader, evaluate_on};
use crate::{Error, Result};
use prototree_tree::{Observer, Stage};

/// Accuracy of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassAccuracy {
    /// Class name.
    pub name: String,
    /// Test images of the class.
    pub images: u64,
    /// Share of them predicted correctly.
    pub accuracy: f64,
}

/// A detailed evaluation for one routing mode.
#[derive(Debug, Clone, Serialize)]
pub struct EvalDetails {
    /// All routing modes, fidelity and path length.
    pub report: EvalReport,
    /// The routing mode the details below are for.
    pub routing: Routing,
    /// Accuracy of that mode.
    pub accuracy: f64,
    /// Per-class accuracy of that mode.
    pub per_class: Vec<ClassAccuracy>,
    /// `confusion[true][predicted]` of that mode.
    pub confusion: Vec<Vec<u64>>,
    /// Class names, index = class id.
    pub class_names: Vec<String>,
}

impl EvalDetails {
    /// The confusion matrix as CSV (header row and column of class names).
    pub fn confusion_csv(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut out = String::from("true \\ predicted");
        for n in &self.class_names {
            out.push(',');
            out.push_str(&quote(n));
        }
        out.push('\n');
        for (name, row) in self.class_names.iter().zip(&self.confusion) {
            out.push_str(&quote(name));
            for v in row {
                out.push(',');
                out.push_str(&v.to_string());
            }
            out.push('\n');
        }
        out
    }
}

/// Loads the model in `model_dir` and evaluates it on the test split of the data set in
/// `data_dir` (CUB or ImageFolder layout), with the model's own preprocessing.
pub fn evaluate_dir(
    model_dir: &Path,
    data_dir: &Path,
    batch_size: usize,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<EvalReport> {
    Ok(evaluate_dir_detailed(model_dir, data_dir, Routing::Soft, batch_size, device, obs)?.report)
}

/// [`evaluate_dir`] with per-class accuracy and the confusion matrix of `routing`.
pub fn evaluate_dir_detailed(
    model_dir: &Path,
    data_dir: &Path,
    routing: Routing,
    batch_size: usize,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<EvalDetails> {
    let saved = load_model(model_dir, device)?;
    evaluate_model(&saved, data_dir, routing, batch_size, obs).map_err(|e| match e {
        Error::Mismatch(m) => Error::Mismatch(format!("{m} (model {})", model_dir.display())),
        other => other,
    })
}

/// [`evaluate_dir_detailed`] of a loaded model, on the model's device.
pub fn evaluate_model(
    saved: &SavedModel,
    data_dir: &Path,
    routing: Routing,
    batch_size: usize,
    obs: &mut dyn Observer,
) -> Result<EvalDetails> {
    let device = saved.model.device().clone();
    let device = &device;
    let (_, loader) = eval_loader(data_dir, Split::Test, &saved.meta, batch_size, obs)?;
    let report = evaluate_on(&saved.model, &loader, device, obs)?;
    let k = saved.model.num_classes();
    let mut confusion = vec![vec![0u64; k]; k];
    let mut source = LoaderSource::new(&loader, device, 0);
    obs.stage_started(Stage::Evaluate, source.num_batches());
    for (i, batch) in source.batches(0).enumerate() {
        let batch = batch?;
        let labels = batch.labels.to_vec1::<u32>()?;
        for (pred, y) in saved
            .model
            .predict(&batch.images, routing)?
            .iter()
            .zip(labels)
        {
            if let Some(row) = confusion.get_mut(y as usize) {
                if let Some(cell) = row.get_mut(pred.class_index) {
                    *cell += 1;
                }
            }
        }
        obs.stage_progress(i + 1);
    }
    obs.stage_finished(Stage::Evaluate);
    let total: u64 = confusion.iter().flatten().sum();
    let correct: u64 = (0..k).map(|c| confusion[c][c]).sum();
    let per_class = (0..k)
        .map(|c| {
            let n: u64 = confusion[c].iter().sum();
            ClassAccuracy {
                name: saved.meta.class_names.get(c).cloned().unwrap_or_default(),
                images: n,
                accuracy: if n == 0 {
                    0.0
                } else {
                    confusion[c][c] as f64 / n as f64
                },
            }
        })
        .collect();
    Ok(EvalDetails {
        report,
        routing,
        accuracy: if total == 0 {
            0.0
        } else {
            correct as f64 / total as f64
        },
        per_class,
        confusion,
        class_names: saved.meta.class_names.clone(),
    })
}
