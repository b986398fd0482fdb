//! Training a tree on a CUB-layout data set and saving it as a model directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use prototree_data::{Augmentation, Dataset, Loader, LoaderConfig, Normalization, Split};
use prototree_tree::io::Preprocessing;
use prototree_tree::{
    evaluate, save_model, EpochStats, EvalReport, ModelMeta, ProtoTree, TrainConfig, Trainer,
    TreeConfig,
};

use crate::observer::{PipelineObserver, Stage};
use crate::source::LoaderSource;
use crate::{Error, Result};

/// Name of the per-epoch metrics log in a model directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Everything a training run needs.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// Data set directory in CUB-200-2011 layout.
    pub data: PathBuf,
    /// Output model directory.
    pub out: PathBuf,
    /// Architecture; `num_classes` is taken from the data set.
    pub tree: TreeConfig,
    /// Schedule.
    pub train: TrainConfig,
    /// Square input side in pixels.
    pub image_size: u32,
    /// Training-time augmentation.
    pub augmentation: Augmentation,
    /// Crop images to their bounding boxes.
    pub crop_to_bbox: bool,
    /// Evaluate on the test split every this many epochs (0: only at the end).
    pub eval_every: usize,
    /// Device to train on.
    pub device: Device,
}

/// The result of a training run.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The trained model.
    pub model: ProtoTree,
    /// Its configuration, as saved.
    pub meta: ModelMeta,
    /// Per-epoch statistics.
    pub history: Vec<EpochStats>,
    /// Final evaluation on the test split.
    pub test: EvalReport,
    /// Seconds spent training (without loading and final evaluation).
    pub train_seconds: f64,
}

/// Loaded training and test images of a CUB-layout data set.
pub struct LoadedData {
    /// The data set's metadata.
    pub dataset: Dataset,
    /// Training images (augmented, shuffled).
    pub train: Loader,
    /// Test images (no augmentation, not shuffled).
    pub test: Loader,
}

/// Opens a CUB-layout data set and decodes its train and test splits.
#[allow(clippy::too_many_arguments)]
pub fn load_data(
    dir: &Path,
    image_size: u32,
    batch_size: usize,
    augmentation: Augmentation,
    crop_to_bbox: bool,
    normalization: Normalization,
    obs: &mut dyn PipelineObserver,
) -> Result<LoadedData> {
    let dataset = Dataset::open(dir)?;
    let train_samples = dataset.samples(Split::Train);
    let test_samples = dataset.samples(Split::Test);
    if train_samples.is_empty() {
        return Err(Error::Mismatch(format!(
            "{}: the data set has no training images",
            dir.display()
        )));
    }
    if test_samples.is_empty() {
        return Err(Error::Mismatch(format!(
            "{}: the data set has no test images",
            dir.display()
        )));
    }
    let base = LoaderConfig {
        batch_size,
        image_size,
        crop_to_bbox,
        augmentation,
        normalization,
        shuffle: true,
        drop_last: false,
    };
    obs.stage_started(Stage::LoadImages, train_samples.len() + test_samples.len());
    let n_train = train_samples.len();
    let train = Loader::new(train_samples, base.clone(), &mut |done, _| {
        obs.stage_progress(done)
    })?;
    let test_cfg = LoaderConfig {
        augmentation: Augmentation::None,
        shuffle: false,
        ..base
    };
    let test = Loader::new(test_samples, test_cfg, &mut |done, _| {
        obs.stage_progress(n_train + done)
    })?;
    obs.stage_finished(Stage::LoadImages);
    Ok(LoadedData {
        dataset,
        train,
        test,
    })
}

fn append_metrics(path: &Path, stats: &EpochStats) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let line = serde_json::to_string(stats).map_err(|e| Error::Invalid(e.to_string()))?;
    writeln!(f, "{line}").map_err(io)
}

/// Trains a tree as `job` says, evaluates it on the test split and saves it to `job.out`.
pub fn train(job: &TrainJob, obs: &mut dyn PipelineObserver) -> Result<TrainOutcome> {
    let train_cfg = job.train.check().map_err(prototree_tree::Error::from)?;
    let (mean, std) = job.tree.backbone.normalization();
    let normalization = Normalization { mean, std };
    let data = load_data(
        &job.data,
        job.image_size,
        job.train.batch_size,
        job.augmentation,
        job.crop_to_bbox,
        normalization,
        obs,
    )?;
    let tree_cfg = TreeConfig {
        num_classes: data.dataset.num_classes(),
        ..job.tree.clone()
    }
    .check()
    .map_err(prototree_tree::Error::from)?;
    let mut model = ProtoTree::new(&tree_cfg, &job.device, job.train.seed)?;
    let mut trainer = Trainer::new(&train_cfg, &model)?;
    std::fs::create_dir_all(&job.out).map_err(|source| Error::Io {
        path: job.out.clone(),
        source,
    })?;
    let metrics = job.out.join(METRICS_FILE);
    if metrics.exists() {
        std::fs::remove_file(&metrics).map_err(|source| Error::Io {
            path: metrics.clone(),
            source,
        })?;
    }
    let mut train_src = LoaderSource::new(&data.train, &job.device, job.train.seed);
    let mut test_src = LoaderSource::new(&data.test, &job.device, job.train.seed);
    let start = Instant::now();
    let mut history = Vec::new();
    obs.stage_started(Stage::Train, job.train.epochs);
    for epoch in 1..=job.train.epochs {
        let eval_now =
            job.eval_every > 0 && epoch % job.eval_every == 0 && epoch < job.train.epochs;
        let eval: Option<&mut dyn prototree_tree::BatchSource> =
            if eval_now { Some(&mut test_src) } else { None };
        let stats = trainer.train_epoch(&mut model, &mut train_src, eval, obs)?;
        append_metrics(&metrics, &stats)?;
        history.push(stats);
        obs.stage_progress(epoch);
    }
    obs.stage_finished(Stage::Train);
    let train_seconds = start.elapsed().as_secs_f64();
    obs.stage_started(Stage::Evaluate, data.test.num_batches());
    let test = evaluate(&model, &mut test_src, obs)?;
    obs.stage_finished(Stage::Evaluate);
    let meta = ModelMeta {
        format_version: prototree_tree::io::FORMAT_VERSION,
        tree: tree_cfg.config().clone(),
        class_names: data.dataset.class_names().to_vec(),
        preprocessing: Preprocessing {
            image_size: job.image_size,
            mean,
            std,
        },
        train: Some(job.train.clone()),
        stage: "trained".into(),
    };
    save_model(&job.out, &model, &meta, &[])?;
    Ok(TrainOutcome {
        model,
        meta,
        history,
        test,
        train_seconds,
    })
}
