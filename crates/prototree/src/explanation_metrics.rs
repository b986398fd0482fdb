//! Explanation quality of a saved model on an annotated data set: do prototypes sit on
//! object parts, activate on the same part across images and under noise, and do the
//! decisions depend on the patches the explanations show? The measures are
//! [`prototree_metrics`]'s, described in `docs/explanations.md`; this module adds loading
//! from a model directory and saving as JSON.

use std::path::Path;

use candle_core::Device;
use prototree_tree::{load_model, Observer};

pub use prototree_metrics::{
    explanation_metrics, explanation_metrics_with, ExplanationMetrics, MetricsConfig,
    PerturbationDrop, Phase, PrototypeMetrics, SourceRegion,
};

use crate::{Error, Result};

/// Name of the JSON file the metrics are conventionally saved as.
pub const EXPLANATION_METRICS_FILE: &str = "explanation_metrics.json";

/// Loads the model in `model_dir` and measures its explanations on the test split of the
/// CUB-layout data set in `data_dir` with the settings `cfg` (the defaults, or e.g.
/// `max_images` to bound the time on a large data set).
pub fn explanation_metrics_dir(
    model_dir: &Path,
    data_dir: &Path,
    cfg: &MetricsConfig,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<ExplanationMetrics> {
    let saved = load_model(model_dir, device)?;
    Ok(explanation_metrics_with(
        &saved, data_dir, cfg, device, obs,
    )?)
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
        let err =
            explanation_metrics_dir(&dir, &dir, &MetricsConfig::default(), &Device::Cpu, &mut ())
                .unwrap_err()
                .to_string();
        assert!(err.contains("config.json"), "{err}");
        let e = Error::from(prototree_metrics::Error::BadAnnotation {
            path: "synth.json".into(),
            reason: "bad".into(),
        });
        assert_eq!(e.to_string(), "synth.json: bad");
    }
}
