//! Evaluating a saved model directory on a data set's test split.

use std::path::Path;

use candle_core::Device;
use prototree_data::{Augmentation, CubDataset, Loader, LoaderConfig, Normalization, Split};
use prototree_tree::{evaluate, load_model, EvalReport};

use crate::observer::{PipelineObserver, Stage};
use crate::source::LoaderSource;
use crate::{Error, Result};

/// Loads the model in `model_dir` and evaluates it on the test split of the CUB-layout
/// data set in `data_dir`, with the model's own preprocessing.
pub fn evaluate_dir(
    model_dir: &Path,
    data_dir: &Path,
    batch_size: usize,
    device: &Device,
    obs: &mut dyn PipelineObserver,
) -> Result<EvalReport> {
    let saved = load_model(model_dir, device)?;
    let dataset = CubDataset::open(data_dir)?;
    if dataset.num_classes() != saved.model.num_classes() {
        return Err(Error::Mismatch(format!(
            "{}: the data set has {} classes but the model in {} was trained on {}",
            data_dir.display(),
            dataset.num_classes(),
            model_dir.display(),
            saved.model.num_classes()
        )));
    }
    let samples = dataset.samples(Split::Test);
    if samples.is_empty() {
        return Err(Error::Mismatch(format!(
            "{}: the data set has no test images",
            data_dir.display()
        )));
    }
    let p = saved.meta.preprocessing;
    let cfg = LoaderConfig {
        batch_size: batch_size.max(1),
        image_size: p.image_size,
        crop_to_bbox: false,
        augmentation: Augmentation::None,
        normalization: Normalization {
            mean: p.mean,
            std: p.std,
        },
        shuffle: false,
        drop_last: false,
    };
    obs.stage_started(Stage::LoadImages, samples.len());
    let loader = Loader::new(samples, cfg, &mut |done, _| obs.stage_progress(done))?;
    obs.stage_finished(Stage::LoadImages);
    let mut source = LoaderSource::new(&loader, device, 0);
    Ok(evaluate(&saved.model, &mut source, obs)?)
}
