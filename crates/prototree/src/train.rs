//! Training a tree on a CUB-layout data set and saving it as a model directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use prototree_data::{
    Augmentation, Dataset, Loader, LoaderConfig, Normalization, Sample, SkippedImage, Split,
};
use prototree_tree::checkpoint::checkpoint_exists;
use prototree_tree::io::{write_atomic, Preprocessing};
use prototree_tree::{
    evaluate, load_checkpoint, save_checkpoint, save_model, EpochStats, EvalReport, ModelMeta,
    ProtoTree, TrainConfig, TrainState, Trainer, TreeConfig,
};

use crate::device::device_name;
use crate::observer::{PipelineObserver, Stage};
use crate::out_of_memory::advise_on_out_of_memory;
use crate::run_config::{RunConfig, RUN_CONFIG_FILE};
use crate::source::LoaderSource;
use crate::{Error, Result};

/// Name of the per-epoch metrics log in a model directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Everything a training run needs.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// Data set directory (CUB-200-2011 or ImageFolder layout).
    pub data: PathBuf,
    /// Output run directory (final model, `run.toml`, `metrics.jsonl`, `checkpoints/`).
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
    /// Pretrained backbone weights, if any.
    pub weights: Option<PathBuf>,
    /// Train on about 1% of the data for one epoch per phase, to check a configuration.
    pub quick: bool,
    /// Continue the run in `out` from its last checkpoint.
    pub resume: bool,
    /// Leave out images that cannot be read (listed in `skipped_images.txt`) instead of
    /// failing.
    pub skip_bad_images: bool,
    /// Device to train on.
    pub device: Device,
}

impl TrainJob {
    /// A job from a run configuration.
    pub fn from_run_config(cfg: &RunConfig, out: PathBuf, device: Device) -> Self {
        Self {
            data: cfg.data.clone(),
            out,
            tree: TreeConfig {
                backbone: cfg.backbone,
                depth: cfg.depth,
                proto_dim: cfg.proto_dim,
                num_classes: 2,
            },
            train: cfg.schedule.clone(),
            image_size: cfg.image_size,
            augmentation: cfg.augmentation,
            crop_to_bbox: cfg.crop_to_bbox,
            eval_every: cfg.eval_every,
            weights: cfg.weights.clone(),
            quick: false,
            resume: false,
            skip_bad_images: cfg.skip_bad_images,
            device,
        }
    }

    /// The job's run configuration (what `run.toml` holds).
    pub fn run_config(&self) -> RunConfig {
        RunConfig {
            data: self.data.clone(),
            backbone: self.tree.backbone,
            weights: self.weights.clone(),
            depth: self.tree.depth,
            proto_dim: self.tree.proto_dim,
            image_size: self.image_size,
            augmentation: self.augmentation,
            crop_to_bbox: self.crop_to_bbox,
            eval_every: self.eval_every,
            skip_bad_images: self.skip_bad_images,
            schedule: self.train.clone(),
        }
    }
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
    /// Images left out because they could not be read (with `skip_bad_images`).
    pub skipped: Vec<SkippedImage>,
}

/// Opens a data set (CUB or ImageFolder layout) and decodes its train and test splits.
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
    load_data_with(
        dir,
        image_size,
        batch_size,
        augmentation,
        crop_to_bbox,
        normalization,
        None,
        false,
        obs,
    )
}

/// [`load_data`] keeping only about `fraction` of each class's images (at least two
/// training images and one test image per class) when given.
#[allow(clippy::too_many_arguments)]
pub fn load_data_with(
    dir: &Path,
    image_size: u32,
    batch_size: usize,
    augmentation: Augmentation,
    crop_to_bbox: bool,
    normalization: Normalization,
    fraction: Option<f64>,
    skip_bad_images: bool,
    obs: &mut dyn PipelineObserver,
) -> Result<LoadedData> {
    let dataset = Dataset::open(dir)?;
    let mut train_samples = dataset.samples(Split::Train);
    let mut test_samples = dataset.samples(Split::Test);
    if let Some(f) = fraction {
        train_samples = subsample(train_samples, f, 2);
        test_samples = subsample(test_samples, f, 1);
    }
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
    let test_cfg = LoaderConfig {
        augmentation: Augmentation::None,
        shuffle: false,
        ..base.clone()
    };
    let (train, test, skipped) = if skip_bad_images {
        let (train, mut skipped) =
            Loader::new_skipping_bad(train_samples, base, &mut |done, _| obs.stage_progress(done))?;
        let (test, more) = Loader::new_skipping_bad(test_samples, test_cfg, &mut |done, _| {
            obs.stage_progress(n_train + done)
        })?;
        skipped.extend(more);
        (train, test, skipped)
    } else {
        let train = Loader::new(train_samples, base, &mut |done, _| obs.stage_progress(done))?;
        let test = Loader::new(test_samples, test_cfg, &mut |done, _| {
            obs.stage_progress(n_train + done)
        })?;
        (train, test, Vec::new())
    };
    obs.stage_finished(Stage::LoadImages);
    Ok(LoadedData {
        dataset,
        train,
        test,
        skipped,
    })
}

/// Loads pretrained backbone weights into `model` (PyTorch state-dict names) from a
/// safetensors, zip-format or legacy `.pth` file.
fn load_backbone_weights(model: &ProtoTree, weights: &Path) -> Result<()> {
    let kind = model.config().backbone();
    prototree_backbone::load_weights(
        model.varmap(),
        prototree_tree::init::BACKBONE_PREFIX,
        weights,
        kind.name(),
    )?;
    Ok(())
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

/// File listing the images a run left out (`skip_bad_images`), one `path<TAB>reason` per line.
pub const SKIPPED_IMAGES_FILE: &str = "skipped_images.txt";

/// Directory of the checkpoints inside a run directory.
pub const CHECKPOINTS_DIR: &str = "checkpoints";

/// The latest checkpoint of the run in `out`.
pub fn last_checkpoint_dir(out: &Path) -> PathBuf {
    out.join(CHECKPOINTS_DIR).join("last")
}

/// The best checkpoint (highest test accuracy when evaluated, else training accuracy).
pub fn best_checkpoint_dir(out: &Path) -> PathBuf {
    out.join(CHECKPOINTS_DIR).join("best")
}

/// Keeps about `fraction` of each class's samples (at least `min_per_class`), in order.
pub fn subsample(samples: Vec<Sample>, fraction: f64, min_per_class: usize) -> Vec<Sample> {
    let mut per_class: std::collections::HashMap<usize, usize> = Default::default();
    for s in &samples {
        *per_class.entry(s.class_index).or_default() += 1;
    }
    let mut taken: std::collections::HashMap<usize, usize> = Default::default();
    samples
        .into_iter()
        .filter(|s| {
            let n = per_class.get(&s.class_index).copied().unwrap_or(0);
            let keep = ((n as f64 * fraction).ceil() as usize).max(min_per_class);
            let t = taken.entry(s.class_index).or_default();
            *t += 1;
            *t <= keep
        })
        .collect()
}

/// The schedule of a `--quick` run: one epoch per phase (frozen, then unfrozen).
fn quick_schedule(train: &TrainConfig) -> TrainConfig {
    let frozen = train.freeze_epochs.min(1);
    TrainConfig {
        epochs: frozen + 1,
        freeze_epochs: frozen,
        milestones: Vec::new(),
        ..train.clone()
    }
}

fn rewrite_metrics(path: &Path, history: &[EpochStats]) -> Result<()> {
    let mut text = String::new();
    for stats in history {
        text.push_str(&serde_json::to_string(stats).map_err(|e| Error::Invalid(e.to_string()))?);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// Trains a tree as `job` says, evaluates it on the test split and saves it to `job.out`.
///
/// A checkpoint is written after every epoch (`checkpoints/last`, and `checkpoints/best`
/// when the score improves); with `job.resume` the run continues from `checkpoints/last`
/// and ends exactly as the uninterrupted run would have (bit-identical on the CPU).
pub fn train(job: &TrainJob, obs: &mut dyn PipelineObserver) -> Result<TrainOutcome> {
    let mut job = job.clone();
    if job.quick {
        job.train = quick_schedule(&job.train);
        job.eval_every = 0;
    }
    let train_cfg = job.train.check().map_err(prototree_tree::Error::from)?;
    let (mean, std) = job.tree.backbone.normalization();
    let normalization = Normalization { mean, std };
    let data = load_data_with(
        &job.data,
        job.image_size,
        job.train.batch_size,
        job.augmentation,
        job.crop_to_bbox,
        normalization,
        if job.quick { Some(0.01) } else { None },
        job.skip_bad_images,
        obs,
    )?;
    let tree_cfg = TreeConfig {
        num_classes: data.dataset.num_classes(),
        ..job.tree.clone()
    }
    .check()
    .map_err(prototree_tree::Error::from)?;
    std::fs::create_dir_all(&job.out).map_err(|source| Error::Io {
        path: job.out.clone(),
        source,
    })?;
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
    let skipped_path = job.out.join(SKIPPED_IMAGES_FILE);
    if data.skipped.is_empty() {
        if skipped_path.is_file() {
            std::fs::remove_file(&skipped_path).map_err(|source| Error::Io {
                path: skipped_path.clone(),
                source,
            })?;
        }
    } else {
        let list: String = data
            .skipped
            .iter()
            .map(|s| format!("{}\t{}\n", s.path.display(), s.reason))
            .collect();
        write_atomic(&skipped_path, list.as_bytes())?;
        obs.message(&format!(
            "skipped {} unreadable images (listed in {})",
            data.skipped.len(),
            skipped_path.display()
        ));
    }
    let run_cfg = job.run_config();
    let fingerprint = format!(
        "{}{}",
        run_cfg.fingerprint(),
        if job.quick { " quick" } else { "" }
    );
    let last = last_checkpoint_dir(&job.out);
    let best = best_checkpoint_dir(&job.out);
    let (mut model, mut trainer, mut state) = if job.resume {
        if !checkpoint_exists(&last) {
            return Err(Error::Invalid(format!(
                "{}: no checkpoint to resume from ({} is missing)",
                job.out.display(),
                last.display()
            )));
        }
        let ck = load_checkpoint(&last, &job.device)?;
        if ck.state.fingerprint != fingerprint {
            let diffs = RunConfig::fingerprint_differences(&ck.state.fingerprint, &fingerprint);
            return Err(Error::Mismatch(format!(
                "{}: the checkpoint was written by another configuration ({}); resume with the run's own {RUN_CONFIG_FILE}",
                ck.dir.display(),
                if diffs.is_empty() { "--quick differs".to_string() } else { diffs.join("; ") }
            )));
        }
        if ck.saved.meta.class_names != meta.class_names {
            return Err(Error::Mismatch(format!(
                "{}: the checkpoint's classes differ from those of {}",
                ck.dir.display(),
                job.data.display()
            )));
        }
        let mut trainer = Trainer::new(&train_cfg, &ck.saved.model)?;
        ck.restore_trainer(&mut trainer)?;
        let (saved, state) = ck.into_parts();
        (saved.model, trainer, state)
    } else {
        for dir in [&last, &best] {
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(|source| Error::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
        }
        let model = ProtoTree::new(&tree_cfg, &job.device, job.train.seed)?;
        if let Some(weights) = &job.weights {
            load_backbone_weights(&model, weights)?;
        }
        let trainer = Trainer::new(&train_cfg, &model)?;
        let state = TrainState {
            format_version: prototree_tree::checkpoint::CHECKPOINT_VERSION,
            epochs_done: 0,
            optimizer_steps: [0; 3],
            history: Vec::new(),
            best_epoch: None,
            best_score: f64::NEG_INFINITY,
            fingerprint,
            train_seconds: 0.0,
            partial_epoch: None,
        };
        (model, trainer, state)
    };
    // The effective configuration (on resume: with the possibly extended epochs).
    write_atomic(
        &job.out.join(RUN_CONFIG_FILE),
        run_cfg.to_toml()?.as_bytes(),
    )?;
    let metrics = job.out.join(METRICS_FILE);
    rewrite_metrics(&metrics, &state.history)?;
    let mut train_src = LoaderSource::new(&data.train, &job.device, job.train.seed);
    let mut test_src = LoaderSource::new(&data.test, &job.device, job.train.seed);
    let start = Instant::now();
    let seconds_before = state.train_seconds;
    obs.stage_started(Stage::Train, job.train.epochs);
    obs.stage_progress(state.epochs_done);
    for epoch in state.epochs_done + 1..=job.train.epochs {
        let eval_now =
            job.eval_every > 0 && epoch % job.eval_every == 0 && epoch < job.train.epochs;
        let eval: Option<&mut dyn prototree_tree::BatchSource> =
            if eval_now { Some(&mut test_src) } else { None };
        let stats = match trainer.train_epoch(&mut model, &mut train_src, eval, obs) {
            Ok(stats) => stats,
            Err(prototree_tree::Error::Interrupted) => {
                // Keep the batches of the interrupted epoch: `--resume` continues it.
                if trainer.partial_epoch().is_some() {
                    state.train_seconds = seconds_before + start.elapsed().as_secs_f64();
                    save_checkpoint(&last, &model, &meta, &trainer, &state)?;
                }
                return Err(prototree_tree::Error::Interrupted.into());
            }
            Err(e) => {
                return Err(advise_on_out_of_memory(
                    Error::from(e),
                    job.train.batch_size,
                    &device_name(&job.device),
                ))
            }
        };
        append_metrics(&metrics, &stats)?;
        let score = stats
            .eval
            .as_ref()
            .map(|e| e.accuracy_soft)
            .unwrap_or(stats.train_accuracy);
        let improved = score > state.best_score;
        if improved {
            state.best_score = score;
            state.best_epoch = Some(epoch);
        }
        state.history.push(stats);
        state.epochs_done = epoch;
        state.train_seconds = seconds_before + start.elapsed().as_secs_f64();
        save_checkpoint(&last, &model, &meta, &trainer, &state)?;
        if improved {
            save_checkpoint(&best, &model, &meta, &trainer, &state)?;
        }
        obs.stage_progress(epoch);
    }
    obs.stage_finished(Stage::Train);
    let train_seconds = seconds_before + start.elapsed().as_secs_f64();
    obs.stage_started(Stage::Evaluate, data.test.num_batches());
    let test = evaluate(&model, &mut test_src, obs)?;
    obs.stage_finished(Stage::Evaluate);
    save_model(&job.out, &model, &meta, &[])?;
    if let Err(e) = crate::plot::write_training_curves(&job.out, &state.history) {
        obs.message(&format!("could not draw the training curves: {e}"));
    }
    Ok(TrainOutcome {
        model,
        meta,
        history: state.history,
        test,
        train_seconds,
    })
}
