//! Explanation quality of a saved model on an annotated data set: do prototypes sit on
//! object parts, activate on the same part across images and under noise, and do the
//! decisions depend on the patches the explanations show? A facade over
//! [`prototree_metrics`] reporting progress to a [`Observer`]; the metrics and
//! their sources are described in `docs/explanations.md`.

use std::path::Path;

use candle_core::Device;
use prototree_tree::{load_model, SavedModel};

pub use prototree_metrics::{
    ExplanationMetrics, MetricsConfig, PerturbationDrop, Phase, PrototypeMetrics, SourceRegion,
};

use crate::{Error, Result};
use prototree_tree::{Observer, Stage};

/// Name of the JSON file the metrics are conventionally saved as.
pub const EXPLANATION_METRICS_FILE: &str = "explanation_metrics.json";

/// The facade's error for a metrics error.
fn from_metrics(e: prototree_metrics::Error) -> Error {
    use prototree_metrics::Error as M;
    match e {
        M::Tree(e) => Error::Tree(e),
        M::Data(e) => Error::Data(e),

        M::Candle(e) => Error::Candle(e),
        M::Io { path, source } => Error::Io { path, source },
        M::BadAnnotation { path, reason } => Error::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
        },
        M::Invalid(msg) => Error::Mismatch(msg),
    }
}

/// [`explanation_metrics`] with explicit settings.
pub fn explanation_metrics_with(
    saved: &SavedModel,
    data_dir: &Path,
    cfg: &MetricsConfig,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<ExplanationMetrics> {
    let mut current: Option<Phase> = None;
    let result = prototree_metrics::explanation_metrics_with(
        saved,
        data_dir,
        cfg,
        device,
        &mut |phase, done, total| {
            let stage = match phase {
                Phase::LoadImages => Stage::LoadImages,
                _ => Stage::Evaluate,
            };
            if current != Some(phase) {
                if let Some(prev) = current {
                    obs.stage_finished(match prev {
                        Phase::LoadImages => Stage::LoadImages,
                        _ => Stage::Evaluate,
                    });
                }
                obs.message(&format!("explanation metrics: {}", phase.label()));
                obs.stage_started(stage, total);
                current = Some(phase);
            }
            obs.stage_progress(done);
        },
    );
    if let Some(prev) = current {
        obs.stage_finished(match prev {
            Phase::LoadImages => Stage::LoadImages,
            _ => Stage::Evaluate,
        });
    }
    result.map_err(from_metrics)
}

/// Measures the explanations of `saved` (best pruned and projected) on the test split of
/// the CUB-layout data set in `data_dir`, which needs part annotations (a part-labelled
/// segmentation mask, as the synthetic birds have, or `parts/part_locs.txt`).
pub fn explanation_metrics(
    saved: &SavedModel,
    data_dir: &Path,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<ExplanationMetrics> {
    explanation_metrics_with(saved, data_dir, &MetricsConfig::default(), device, obs)
}

/// Loads the model in `model_dir` and measures its explanations on `data_dir` (see
/// [`explanation_metrics`]).
pub fn explanation_metrics_dir(
    model_dir: &Path,
    data_dir: &Path,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<ExplanationMetrics> {
    let saved = load_model(model_dir, device)?;
    explanation_metrics(&saved, data_dir, device, obs)
}

/// [`explanation_metrics_dir`] with explicit settings (e.g. `max_images` to bound the time
/// on a large data set).
pub fn explanation_metrics_dir_with(
    model_dir: &Path,
    data_dir: &Path,
    cfg: &MetricsConfig,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<ExplanationMetrics> {
    let saved = load_model(model_dir, device)?;
    explanation_metrics_with(&saved, data_dir, cfg, device, obs)
}

/// Writes `metrics` as pretty JSON to `path` (atomically).
pub fn write_explanation_metrics(path: &Path, metrics: &ExplanationMetrics) -> Result<()> {
    let json = serde_json::to_vec_pretty(metrics).map_err(|e| Error::Invalid(e.to_string()))?;
    prototree_tree::io::write_atomic(path, &json)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_what_is_missing() {
        let dir = std::env::temp_dir().join("prototree-no-such-model-dir");
        let err = explanation_metrics_dir(&dir, &dir, &Device::Cpu, &mut ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json"), "{err}");
        let e = from_metrics(prototree_metrics::Error::BadAnnotation {
            path: "synth.json".into(),
            reason: "bad".into(),
        });
        assert_eq!(e.to_string(), "synth.json: bad");
    }
}
