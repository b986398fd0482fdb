//! Training a tree on a CUB-layout data set into a run directory: load the data, build
//! the [`Learner`] from the [`RunConfig`], fit, evaluate, save.

use std::path::Path;

use candle_core::Device;
use prototree_data::{
    Augmentation, Dataset, Loader, LoaderConfig, Protocol, Role, Sample, SkippedImage, Split,
};
use prototree_learn::{load_checkpoint, Interrupter, Learner, LearnerBuilder, RunDir, RunMode};
use prototree_tree::io::write_atomic;
use prototree_tree::{
    evaluate, save_model, EpochStats, EvalReport, ModelMeta, Observer, ProtoTree, Stage,
    WarmupEpoch,
};

use crate::device::device_name;
use crate::out_of_memory::advise_on_out_of_memory;
use crate::run_config::{RunConfig, RUN_CONFIG_FILE};
use crate::source::LoaderSource;
use crate::{Error, Result};

pub use prototree_learn::{
    best_checkpoint_dir, last_checkpoint_dir, CHECKPOINTS_DIR, METRICS_FILE,
};

/// File listing the images a run left out (`skip_bad_images`), one `path<TAB>reason` per line.
pub const SKIPPED_IMAGES_FILE: &str = "skipped_images.txt";

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
    /// The backbone warm-up's epochs (none without one, or when resumed after it).
    pub warmup: Vec<WarmupEpoch>,
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
    /// With several attempts ([`RunConfig::attempts`]): the training images held out to
    /// choose between them (no augmentation, not shuffled), left out of `train`.
    pub validation: Option<Loader>,
    /// Images left out because they could not be read (with `skip_bad_images`).
    pub skipped: Vec<SkippedImage>,
}

/// Opens the data set of `cfg` (CUB or ImageFolder layout) and decodes the views of its
/// train and test splits that the run's data protocol takes (about 1% of each class's
/// images, at least two training images and one test image per class, for a `quick` run).
/// A run with several attempts holds [`RunConfig::validation_share`] of each class's
/// training images out as its validation split ([`carve_validation`], seeded by the
/// run's seed).
pub fn load_data(cfg: &RunConfig, obs: &mut dyn Observer) -> Result<LoadedData> {
    let dir = &cfg.data;
    let dataset = Dataset::open(dir)?;
    let mut train_samples = dataset.samples(Split::Train);
    let mut test_samples = dataset.samples(Split::Test);
    if cfg.quick {
        train_samples = subsample(train_samples, 0.01, 2);
        test_samples = subsample(test_samples, 0.01, 1);
    }
    let validation_samples = if cfg.attempts > 1 {
        let (kept, held_out) =
            carve_validation(train_samples, cfg.validation_share, cfg.schedule.seed);
        train_samples = kept;
        held_out
    } else {
        Vec::new()
    };
    for (samples, split) in [(&train_samples, "training"), (&test_samples, "test")] {
        if samples.is_empty() {
            return Err(Error::Mismatch(format!(
                "{}: the data set has no {split} images",
                dir.display()
            )));
        }
    }
    let base = cfg.training_loader_config();
    let n_validation = validation_samples.len();
    obs.stage_started(
        Stage::LoadImages,
        train_samples.len() + test_samples.len() + n_validation,
    );
    let n_train = train_samples.len();
    let test_cfg = LoaderConfig {
        augmentation: Augmentation::None,
        shuffle: false,
        ..base.clone()
    };
    let protocol = cfg.schedule.protocol_or_default();
    let (train_views, test_views, validation_views) = (
        protocol.view_list(Role::Train, train_samples, cfg.crop_to_bbox),
        protocol.view_list(Role::Test, test_samples, cfg.crop_to_bbox),
        protocol.view_list(Role::Test, validation_samples, cfg.crop_to_bbox),
    );
    let n_before_validation = n_train + test_views.len();
    // One loading path for the three lists: skipping unreadable images (collected in
    // `skipped`) or failing on the first, with progress counted across all of them.
    let mut skipped = Vec::new();
    let mut load = |views, config, offset: usize| -> Result<Loader> {
        let mut progress = |done: usize, _: usize| obs.stage_progress(offset + done);
        if cfg.skip_bad_images {
            let (loader, more) = Loader::with_views_skipping_bad(views, config, &mut progress)?;
            skipped.extend(more);
            Ok(loader)
        } else {
            Ok(Loader::with_views(views, config, &mut progress)?)
        }
    };
    let train = load(train_views, base, 0)?;
    let test = load(test_views, test_cfg.clone(), n_train)?;
    let validation = if validation_views.is_empty() {
        None
    } else {
        Some(load(validation_views, test_cfg, n_before_validation)?)
    };
    obs.stage_finished(Stage::LoadImages);
    Ok(LoadedData {
        dataset,
        train,
        test,
        validation,
        skipped,
    })
}

/// Splits `samples` into training and validation images: from each class with at least
/// two images, `ceil(share × n)` of its images (at most `n − 1`) chosen at random with
/// `seed`; both lists keep the samples' order. A class with one image stays in training.
pub fn carve_validation(samples: Vec<Sample>, share: f64, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut by_class: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, s) in samples.iter().enumerate() {
        by_class.entry(s.class_index).or_default().push(i);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ VALIDATION_SEED_SALT);
    let mut held_out = vec![false; samples.len()];
    for members in by_class.values_mut() {
        let n = members.len();
        if n < 2 {
            continue;
        }
        let take = ((share * n as f64).ceil() as usize).clamp(1, n - 1);
        members.shuffle(&mut rng);
        for &i in &members[..take] {
            held_out[i] = true;
        }
    }
    let (mut kept, mut validation) = (Vec::new(), Vec::new());
    for (s, out) in samples.into_iter().zip(held_out) {
        if out {
            validation.push(s);
        } else {
            kept.push(s);
        }
    }
    (kept, validation)
}

/// Whether [`carve_validation`] holds out any of the training images of `cfg`'s data set
/// (some class has at least two). Reads the data set's lists, not its images, so a run
/// that cannot choose between attempts says so before loading them.
fn can_hold_out_validation(cfg: &RunConfig) -> Result<bool> {
    let samples = Dataset::open(&cfg.data)?.samples(Split::Train);
    let (_, held_out) = carve_validation(samples, cfg.validation_share, cfg.schedule.seed);
    Ok(!held_out.is_empty())
}

/// Mixed into the run's seed for the validation split, so that the split does not follow
/// the same random stream as the run's initialisation.
const VALIDATION_SEED_SALT: u64 = 0x5eed_0f7a_11da_7e00;

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

/// Writes (or, when nothing was skipped, removes) the run's list of skipped images.
pub(crate) fn record_skipped(
    run: &Path,
    skipped: &[SkippedImage],
    obs: &mut dyn Observer,
) -> Result<()> {
    let path = run.join(SKIPPED_IMAGES_FILE);
    if skipped.is_empty() {
        if path.is_file() {
            std::fs::remove_file(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        }
        return Ok(());
    }
    let list: String = skipped
        .iter()
        .map(|s| format!("{}\t{}\n", s.path.display(), s.reason))
        .collect();
    write_atomic(&path, list.as_bytes())?;
    obs.message(&format!(
        "skipped {} unreadable images (listed in {})",
        skipped.len(),
        path.display()
    ));
    Ok(())
}

/// The learner of a run: a fresh model (with pretrained backbone weights when given), or
/// the run's last checkpoint when resuming.
fn learner_for(
    cfg: &RunConfig,
    run: RunDir,
    meta: &ModelMeta,
    device: &Device,
) -> Result<LearnerBuilder> {
    let builder = if run.mode() == RunMode::Resume {
        let mut checkpoint = load_checkpoint(&run.last_checkpoint(), device)?;
        checkpoint.state.fingerprint =
            RunConfig::normalized_fingerprint(&checkpoint.state.fingerprint);
        Learner::resume(checkpoint, &cfg.schedule)
    } else {
        let tree = meta.tree.check().map_err(prototree_tree::Error::from)?;
        let model = ProtoTree::new(&tree, device, cfg.schedule.seed)?;
        if let Some(weights) = &cfg.weights {
            load_backbone_weights(&model, weights)?;
        }
        Learner::builder(model, &cfg.schedule)
    };
    Ok(builder
        .with_run_dir(run, meta.clone())
        .with_eval_every(cfg.eval_every)
        .with_fingerprint(cfg.fingerprint()))
}

/// Trains a tree as `cfg` says into the run directory `out`, evaluates it on the test
/// split and saves it there.
///
/// `mode` says whether `out` holds a new run (refused when it already holds one), one to
/// resume, or one to replace. A checkpoint is written after every epoch
/// (`checkpoints/last`, and `checkpoints/best` when the score improves); a resumed run ends
/// exactly as the uninterrupted run would have (bit-identical on the CPU). Stopping
/// `interrupter` saves the batches trained so far and returns the learner's `Interrupted`.
/// With several [`RunConfig::attempts`] the run trains them in `out/attempts/` and keeps
/// the best on its validation split ([`crate::attempts`]).
pub fn train(
    cfg: &RunConfig,
    out: &Path,
    mode: RunMode,
    device: &Device,
    interrupter: &Interrupter,
    obs: &mut dyn Observer,
) -> Result<TrainOutcome> {
    let cfg = match mode {
        RunMode::Resume => cfg.effective().settled_for_resume(out),
        _ => cfg.effective().settled(true),
    };
    cfg.check(Path::new("the run configuration"))?;
    if cfg.crop_to_bbox && cfg.schedule.protocol == Some(Protocol::Reference) {
        return Err(Error::Invalid(
            "crop_to_bbox belongs to the plain data protocol (the reference protocol makes its own crops): set `protocol = \"plain\"` (--protocol plain) or drop it".into(),
        ));
    }
    let mut cfg = cfg;
    if cfg.attempts > 1 && mode != RunMode::Resume && !can_hold_out_validation(&cfg)? {
        obs.message(&format!(
            "{}: no class has two training images, so none can be held out to choose between attempts; training one attempt on all of them",
            cfg.data.display()
        ));
        cfg.attempts = 1;
    }
    obs.message(&cfg.recipe_summary());
    if cfg.attempts > 1 {
        return crate::attempts::train_attempts(&cfg, out, mode, device, interrupter, obs);
    }
    crate::attempts::prepare_run_dir(out, mode)?;
    let run = RunDir::open(out, mode)?;
    let data = load_data(&cfg, obs)?;
    let meta = cfg.model_meta(data.dataset.class_names().to_vec());
    record_skipped(out, &data.skipped, obs)?;
    let fitted = fit_run(
        &cfg,
        run,
        &meta,
        &data.train,
        &data.test,
        device,
        interrupter,
        obs,
    )?;
    finish_run(
        out,
        fitted,
        meta,
        &data.test,
        cfg.schedule.seed,
        device,
        obs,
    )
}

/// A fitted run: the model, the learner's state and the warm-up's epochs.
pub(crate) struct Fitted {
    pub(crate) model: ProtoTree,
    pub(crate) state: prototree_learn::LearnerState,
    pub(crate) warmup: Vec<WarmupEpoch>,
}

/// Builds the learner of `cfg` in `run` (new, resumed or replacing), writes the run's
/// `run.toml` and fits it on `train`, evaluating on `eval` as `cfg.eval_every` says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_run(
    cfg: &RunConfig,
    run: RunDir,
    meta: &ModelMeta,
    train: &Loader,
    eval: &Loader,
    device: &Device,
    interrupter: &Interrupter,
    obs: &mut dyn Observer,
) -> Result<Fitted> {
    let out = run.root().to_path_buf();
    let mut learner = learner_for(cfg, run, meta, device)?
        .with_interrupter(interrupter.clone())
        .build()?;
    // The effective configuration (on resume: with the possibly extended epochs).
    write_atomic(&out.join(RUN_CONFIG_FILE), cfg.to_toml()?.as_bytes())?;
    let mut train_src = LoaderSource::new(train, device, cfg.schedule.seed);
    let mut eval_src = LoaderSource::new(eval, device, cfg.schedule.seed);
    let fitted = if cfg.deterministic {
        prototree_tree::reduction::with_deterministic_reductions(|| {
            learner.fit(&mut train_src, Some(&mut eval_src), obs)
        })
    } else {
        learner.fit(&mut train_src, Some(&mut eval_src), obs)
    };
    match fitted {
        Ok(_) => {}
        Err(e @ prototree_learn::Error::Interrupted) => return Err(e.into()),
        Err(e) => {
            let batch = cfg.schedule.batch_size;
            return Err(advise_on_out_of_memory(
                e.into(),
                batch,
                &device_name(device),
            ));
        }
    }
    let warmup = learner.warmup().to_vec();
    let (model, state) = learner.into_parts();
    Ok(Fitted {
        model,
        state,
        warmup,
    })
}

/// Evaluates a fitted model on `test`, saves it in `out` with its training curves.
pub(crate) fn finish_run(
    out: &Path,
    fitted: Fitted,
    meta: ModelMeta,
    test: &Loader,
    seed: u64,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<TrainOutcome> {
    let Fitted {
        model,
        state,
        warmup,
    } = fitted;
    let mut test_src = LoaderSource::new(test, device, seed);
    obs.stage_started(Stage::Evaluate, test.num_batches());
    let test = evaluate(&model, &mut test_src, obs)?;
    obs.stage_finished(Stage::Evaluate);
    save_model(out, &model, &meta, &[])?;
    if let Err(e) = prototree_render::plot::write_training_curves(out, &state.history) {
        obs.message(&format!("could not draw the training curves: {e}"));
    }
    Ok(TrainOutcome {
        model,
        meta,
        history: state.history,
        test,
        warmup,
        train_seconds: state.train_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(per_class: &[usize]) -> Vec<Sample> {
        let mut out = Vec::new();
        for (class, &n) in per_class.iter().enumerate() {
            for _ in 0..n {
                let id = out.len() as u32 + 1;
                out.push(Sample {
                    image_id: id,
                    path: format!("{id}.png").into(),
                    class_index: class,
                    bbox: None,
                    is_train: true,
                });
            }
        }
        out
    }

    #[test]
    fn the_validation_split_takes_a_share_of_each_class() {
        // 20 → 2 held out, 7 → ceil(0.7) = 1, 2 → 1 (at most n − 1), 1 → 0.
        let all = samples(&[20, 7, 2, 1]);
        let (kept, held_out) = carve_validation(all.clone(), 0.1, 3);
        let count = |v: &[Sample], c: usize| v.iter().filter(|s| s.class_index == c).count();
        let held: Vec<usize> = (0..4).map(|c| count(&held_out, c)).collect();
        assert_eq!(held, [2, 1, 1, 0]);
        assert_eq!(kept.len() + held_out.len(), all.len());
        // Disjoint, together the input, each list in the input's order.
        let ids = |v: &[Sample]| v.iter().map(|s| s.image_id).collect::<Vec<_>>();
        let mut both = [ids(&kept), ids(&held_out)].concat();
        assert!(ids(&kept).windows(2).all(|w| w[0] < w[1]));
        assert!(ids(&held_out).windows(2).all(|w| w[0] < w[1]));
        both.sort_unstable();
        assert_eq!(both, ids(&all));
        // The same seed gives the same split; another seed another one.
        assert_eq!(
            ids(&carve_validation(all.clone(), 0.1, 3).1),
            ids(&held_out)
        );
        assert!((0..8).any(|s| ids(&carve_validation(all.clone(), 0.1, s).1) != ids(&held_out)));
        // Half of each class at 0.5.
        let (_, half) = carve_validation(samples(&[10, 4]), 0.5, 0);
        assert_eq!((count(&half, 0), count(&half, 1)), (5, 2));
    }
}
