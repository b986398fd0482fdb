//! Training on the committed fixtures (CUB layout and ImageFolder layout), checkpoints,
//! bit-identical resume, `--quick`, run configuration files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prototree::candle_core::{Device, Tensor};
use prototree::data::Augmentation;
use prototree::learn::load_checkpoint;
use prototree::prelude::*;
use prototree::train::{best_checkpoint_dir, last_checkpoint_dir};

mod common;

fn fixture(name: &str) -> PathBuf {
    common::fixtures().join(name)
}

/// The small run of the common setup over `epochs`, with a learning rate of 2e-3 throughout,
/// one frozen epoch, a milestone at epoch 2, seed 5, flipping augmentation and evaluation
/// after every epoch.
fn job(data: &Path, epochs: usize) -> RunConfig {
    RunConfig {
        schedule: TrainConfig {
            epochs,
            batch_size: 8,
            lr: 2e-3,
            lr_block: 2e-3,
            lr_net: 2e-3,
            freeze_epochs: 1,
            milestones: vec![2],
            seed: 5,
            ..TrainConfig::default()
        },
        augmentation: Augmentation::Flip,
        eval_every: 1,
        ..common::small_job(data)
    }
}

/// Trains `cfg` into `out` (`mode`), observed by `obs`, stopped through `stop`.
fn run_with(
    cfg: &RunConfig,
    out: &Path,
    mode: RunMode,
    stop: &Interrupter,
    obs: &mut dyn Observer,
) -> prototree::Result<TrainOutcome> {
    train(cfg, out, mode, &Device::Cpu, stop, obs)
}

/// Trains `cfg` into the new run directory `out`.
fn run(cfg: &RunConfig, out: &Path) -> prototree::Result<TrainOutcome> {
    run_with(cfg, out, RunMode::New, &Interrupter::new(), &mut ())
}

/// Resumes the run in `out` with `cfg`.
fn resume(cfg: &RunConfig, out: &Path) -> prototree::Result<TrainOutcome> {
    run_with(cfg, out, RunMode::Resume, &Interrupter::new(), &mut ())
}

fn tensors(dir: &Path) -> anyhow::Result<HashMap<String, Vec<f32>>> {
    let map =
        prototree::candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)?;
    map.into_iter()
        .map(|(k, t): (String, Tensor)| Ok((k, t.flatten_all()?.to_vec1::<f32>()?)))
        .collect()
}

#[test]
fn cub_and_imagefolder_fixtures_train_end_to_end() -> anyhow::Result<()> {
    for name in ["cub-tiny", "imagefolder-tiny"] {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("run");
        let outcome = run(&job(&fixture(name), 2), &out)?;
        assert_eq!(outcome.history.len(), 2, "{name}");
        assert_eq!(outcome.test.num_images, 6, "{name}");
        assert_eq!(outcome.meta.class_names.len(), 3, "{name}");
        for file in [
            "config.json",
            "model.safetensors",
            "tree.bin",
            "run.toml",
            "metrics.jsonl",
            "curves.png",
        ] {
            assert!(out.join(file).is_file(), "{name}: {file} missing");
        }
        let lines = std::fs::read_to_string(out.join("metrics.jsonl"))?;
        assert_eq!(lines.lines().count(), 2);
        let ck = load_checkpoint(&last_checkpoint_dir(&out), &Device::Cpu)?;
        assert_eq!(ck.state.epochs_done, 2);
        assert!(best_checkpoint_dir(&out).join("train_state.bin").is_file());
        // The saved run configuration reads back as the job's.
        let cfg = RunConfig::from_file(&out.join("run.toml"))?;
        assert_eq!(cfg.depth, 2);
        assert_eq!(cfg.schedule.epochs, 2);
        assert_eq!(cfg.data, fixture(name));
    }
    Ok(())
}

/// Asks training to stop once `limit` epochs (`per_batch` false: at the first batch of
/// the next one) or `limit` batches (`per_batch` true) are done.
struct StopAfter {
    limit: usize,
    per_batch: bool,
    seen: usize,
    stop: Interrupter,
}
impl StopAfter {
    fn epochs(limit: usize) -> Self {
        Self {
            limit,
            per_batch: false,
            seen: 0,
            stop: Interrupter::new(),
        }
    }
    fn batches(limit: usize) -> Self {
        Self {
            limit,
            per_batch: true,
            seen: 0,
            stop: Interrupter::new(),
        }
    }
    /// Trains `cfg` into the new run `out`, stopping as set.
    fn train(&mut self, cfg: &RunConfig, out: &Path) -> prototree::Result<TrainOutcome> {
        let stop = self.stop.clone();
        run_with(cfg, out, RunMode::New, &stop, self)
    }
}
impl Observer for StopAfter {
    fn on_event(&mut self, event: &Event<'_>) {
        match event {
            Event::BatchFinished(_) => self.seen += usize::from(self.per_batch),
            Event::EpochFinished(_) => self.seen += usize::from(!self.per_batch),
            _ => {}
        }
        if self.seen >= self.limit {
            self.stop.stop();
        }
    }
}

#[test]
fn interrupted_and_resumed_run_is_bit_identical() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = fixture("cub-tiny");
    let straight = dir.path().join("straight");
    let a = run(&job(&data, 3), &straight)?;
    let broken = dir.path().join("broken");
    let err = StopAfter::epochs(2)
        .train(&job(&data, 3), &broken)
        .unwrap_err();
    assert!(err.to_string().contains("interrupt"), "{err}");
    assert_eq!(
        load_checkpoint(&last_checkpoint_dir(&broken), &Device::Cpu)?
            .state
            .epochs_done,
        2
    );
    let b = resume(&job(&data, 3), &broken)?;
    assert_eq!(tensors(&straight)?, tensors(&broken)?);
    let losses = |h: &[EpochStats]| h.iter().map(|s| s.train_loss).collect::<Vec<_>>();
    assert_eq!(losses(&a.history), losses(&b.history));
    assert_eq!(a.test.accuracy_soft, b.test.accuracy_soft);
    let metrics = std::fs::read_to_string(broken.join("metrics.jsonl"))?;
    assert_eq!(metrics.lines().count(), 3);

    // Resuming with another schedule is refused, naming the setting.
    let mut other = job(&data, 3);
    other.schedule.lr = 0.5;
    let err = resume(&other, &broken).unwrap_err().to_string();
    assert!(err.contains("schedule.lr"), "{err}");
    // Resuming a directory without checkpoints is refused.
    let err = resume(&job(&data, 3), &dir.path().join("empty"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no checkpoint"), "{err}");
    Ok(())
}

#[test]
fn run_interrupted_mid_epoch_saves_its_batches_and_resumes_bit_identical() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = fixture("cub-tiny");
    let small_batches = || {
        let mut j = job(&data, 3);
        j.schedule.batch_size = 4;
        j
    };
    let straight = dir.path().join("straight");
    let a = run(&small_batches(), &straight)?;
    let ck = load_checkpoint(&last_checkpoint_dir(&straight), &Device::Cpu)?;
    assert!(ck.state.partial_epoch.is_none());

    // Stop in the middle of the second epoch.
    let broken = dir.path().join("broken");
    let batches_per_epoch = {
        let mut probe = StopAfter::batches(usize::MAX);
        let probe_dir = dir.path().join("probe");
        let mut j = small_batches();
        j.schedule.epochs = 1;
        probe.train(&j, &probe_dir)?;
        probe.seen
    };
    assert!(
        batches_per_epoch >= 2,
        "{batches_per_epoch} batches per epoch"
    );
    let stop_at = batches_per_epoch + batches_per_epoch / 2;
    let err = StopAfter::batches(stop_at)
        .train(&small_batches(), &broken)
        .unwrap_err();
    assert!(err.to_string().contains("interrupt"), "{err}");
    let ck = load_checkpoint(&last_checkpoint_dir(&broken), &Device::Cpu)?;
    assert_eq!(ck.state.epochs_done, 1);
    let partial = ck
        .state
        .partial_epoch
        .clone()
        .expect("interrupted epoch saved");
    assert_eq!(partial.epoch, 2);
    assert_eq!(partial.batches_done, batches_per_epoch / 2);

    let b = resume(&small_batches(), &broken)?;
    assert_eq!(tensors(&straight)?, tensors(&broken)?);
    let losses = |h: &[EpochStats]| h.iter().map(|s| s.train_loss).collect::<Vec<_>>();
    assert_eq!(losses(&a.history), losses(&b.history));
    assert_eq!(a.test.accuracy_soft, b.test.accuracy_soft);
    Ok(())
}

/// A run that re-seeds leaves: a depth-3 tree (spare leaves for 3 classes), 10 epochs,
/// milestone at 7 (re-seeding after epochs 3 to 6), no evaluation.
fn reseeding_job(data: &Path) -> RunConfig {
    let mut j = job(data, 10);
    j.schedule.milestones = vec![7];
    j.schedule.reseed_leaves = true;
    j.eval_every = 0;
    j.depth = 3;
    j
}

#[test]
fn reseeding_repairs_needing_classes_and_resumes_bit_identical() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = fixture("cub-tiny");
    let straight = dir.path().join("straight");
    let a = run(&reseeding_job(&data), &straight)?;
    // Every epoch measures the misrouting; re-seeding happens inside its window only,
    // for classes that needed a leaf in the three epochs up to it.
    let reseeded: Vec<(usize, &prototree::tree::LeafReseed)> = a
        .history
        .iter()
        .flat_map(|e| e.leaf_reseeds.iter().map(move |r| (e.epoch, r)))
        .collect();
    let needing: Vec<Vec<usize>> = a
        .history
        .iter()
        .map(|e| {
            e.leaf_sharing
                .as_ref()
                .map(|l| l.classes_needing_a_leaf())
                .unwrap_or_default()
        })
        .collect();
    assert!(!reseeded.is_empty(), "no leaf was re-seeded: {needing:?}");
    for (epoch, r) in &reseeded {
        assert!((3..7).contains(epoch), "re-seeded after epoch {epoch}");
        for e in &a.history[epoch - 3..*epoch] {
            let sharing = e.leaf_sharing.as_ref().expect("measured");
            assert!(
                sharing.classes_needing_a_leaf().contains(&r.class),
                "{r:?} after epoch {epoch}"
            );
        }
        assert_ne!(r.previous_class, Some(r.class));
    }
    let metrics = std::fs::read_to_string(straight.join("metrics.jsonl"))?;
    assert!(metrics.contains("\"leaf_reseeds\":[{"), "{metrics}");
    assert!(metrics.contains("\"misrouted_classes\""));

    // Interrupted in the middle of the first re-seeding epoch and resumed: the same model
    // (the interrupted epoch's tally is checkpointed).
    let first = reseeded[0].0;
    let batches_per_epoch = {
        let mut probe = StopAfter::batches(usize::MAX);
        let mut j = reseeding_job(&data);
        j.schedule.epochs = 1;
        probe.train(&j, &dir.path().join("probe"))?;
        probe.seen
    };
    let broken = dir.path().join("broken");
    let stop_at = (first - 1) * batches_per_epoch + batches_per_epoch.div_ceil(2);
    StopAfter::batches(stop_at)
        .train(&reseeding_job(&data), &broken)
        .unwrap_err();
    let b = resume(&reseeding_job(&data), &broken)?;
    assert_eq!(tensors(&straight)?, tensors(&broken)?);
    let reseeds = |h: &[EpochStats]| h.iter().map(|e| e.leaf_reseeds.clone()).collect::<Vec<_>>();
    assert_eq!(reseeds(&a.history), reseeds(&b.history));
    Ok(())
}

#[test]
fn repairs_that_keep_the_other_classes_routes_run_the_same_reseeding() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = fixture("cub-tiny");
    let plain = run(&reseeding_job(&data), &dir.path().join("plain"))?;
    let mut j = reseeding_job(&data);
    j.schedule.repair_keeps_routes = true;
    let keeping = run(&j, &dir.path().join("keeping"))?;
    // Up to the first re-seeding the runs are the same, and so is the re-seeding itself
    // (which leaf goes to which class); only the patches of the route repair may differ.
    let first = |h: &[EpochStats]| {
        h.iter()
            .find(|e| !e.leaf_reseeds.is_empty())
            .map(|e| (e.epoch, e.leaf_reseeds.clone()))
    };
    let (a, b) = (first(&plain.history), first(&keeping.history));
    let ((ea, ra), (eb, rb)) = (a.expect("re-seeded"), b.expect("re-seeded"));
    assert_eq!(ea, eb);
    let leaves =
        |r: &[prototree::tree::LeafReseed]| r.iter().map(|x| (x.leaf, x.class)).collect::<Vec<_>>();
    assert_eq!(leaves(&ra), leaves(&rb));
    let losses = |h: &[EpochStats]| h.iter().map(|s| s.train_loss).collect::<Vec<_>>();
    assert_eq!(losses(&plain.history)[..ea], losses(&keeping.history)[..eb]);
    assert!(keeping.history.iter().all(|e| e.train_loss.is_finite()));
    Ok(())
}

#[test]
fn checkpoint_survives_a_half_written_replacement() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("run");
    run(&job(&fixture("cub-tiny"), 1), &out)?;
    let last = last_checkpoint_dir(&out);
    // A save killed after moving the old checkpoint aside and before the new one landed:
    // only `last.old` and a partial `last.tmp` exist.
    let old = last.with_file_name("last.old");
    std::fs::rename(&last, &old)?;
    let tmp = last.with_file_name("last.tmp");
    std::fs::create_dir_all(&tmp)?;
    std::fs::write(tmp.join("model.safetensors"), b"partial")?;
    let ck = load_checkpoint(&last, &Device::Cpu)?;
    assert_eq!(ck.state.epochs_done, 1);
    assert_eq!(ck.dir, old);
    // A truncated train state is a clear error naming the file.
    std::fs::create_dir_all(&last)?;
    for f in [
        "config.json",
        "model.safetensors",
        "tree.bin",
        "optimizer.safetensors",
    ] {
        std::fs::copy(old.join(f), last.join(f))?;
    }
    let state = std::fs::read(old.join("train_state.bin"))?;
    std::fs::write(last.join("train_state.bin"), &state[..state.len() / 2])?;
    std::fs::remove_dir_all(&old)?;
    let err = load_checkpoint(&last, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("train_state.bin"), "{err}");
    Ok(())
}

#[test]
fn deterministic_runs_give_the_same_model_on_1_and_2_threads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let plain = RunConfig {
        deterministic: true,
        ..job(&fixture("cub-tiny"), 2)
    };
    // The scratch recipe's start too: backbone warm-up and prototypes from patches.
    let mut started = plain.clone();
    started.schedule.backbone_warmup_epochs = 1;
    started.schedule.prototypes_from_patches = true;
    for (label, cfg) in [("plain", &plain), ("started", &started)] {
        let mut models = Vec::new();
        for threads in [1, 2] {
            let out = dir.path().join(format!("{label}-threads-{threads}"));
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()?;
            pool.install(|| run(cfg, &out))?;
            models.push(tensors(&out)?);
        }
        assert_eq!(models[0].len(), models[1].len());
        for (name, a) in &models[0] {
            let b = &models[1][name];
            let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{label}: {name} differs between 1 and 2 threads");
        }
    }
    Ok(())
}

#[test]
fn quick_run_uses_one_epoch_per_phase() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut j = job(&fixture("imagefolder-tiny"), 50);
    j.quick = true;
    j.schedule.backbone_warmup_epochs = 5;
    let outcome = run(&j, &dir.path().join("q"))?;
    assert_eq!(outcome.warmup.len(), 1);
    assert_eq!(outcome.history.len(), 2);
    assert!(outcome.history[0].backbone_frozen && !outcome.history[1].backbone_frozen);
    // About 1% of the data, but at least two training images and one test image per class.
    assert_eq!(outcome.test.num_images, 3);
    Ok(())
}

#[test]
fn ensemble_trains_members_by_seed_and_evaluates() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = job(&fixture("cub-tiny"), 1);
    let out = dir.path().join("ens");
    let dirs = prototree::ensemble::train_ensemble(
        &cfg,
        2,
        &out,
        RunMode::New,
        &Device::Cpu,
        &Interrupter::new(),
        &mut (),
    )?;
    assert_eq!(dirs, vec![out.join("tree_1"), out.join("tree_2")]);
    let seeds: Vec<u64> = dirs
        .iter()
        .map(|d| Ok(RunConfig::from_file(&d.join("run.toml"))?.schedule.seed))
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(seeds, vec![5, 6]);
    assert_ne!(tensors(&dirs[0])?, tensors(&dirs[1])?);
    let r =
        prototree::ensemble::evaluate_ensemble(&dirs, &fixture("cub-tiny"), &Device::Cpu, &mut ())?;
    assert_eq!(r.members.len(), 2);
    assert_eq!(r.num_images, 6);
    assert_eq!(
        r.total_prototypes,
        r.members.iter().map(|m| m.num_prototypes).sum::<usize>()
    );
    assert!((0.0..=1.0).contains(&r.accuracy));
    // Members trained on other classes are refused.
    let other = dir.path().join("other");
    run(&job(&fixture("imagefolder-tiny"), 1), &other)?;
    let err = prototree::ensemble::evaluate_ensemble(
        &[dirs[0].clone(), other],
        &fixture("cub-tiny"),
        &Device::Cpu,
        &mut (),
    );
    // ImageFolder class names are the folder names (with the CUB number prefix), so they differ.
    assert!(err.is_err());
    Ok(())
}

#[test]
fn attempts_keep_the_best_on_validation_and_resume() -> anyhow::Result<()> {
    use prototree::attempts::{attempt_dir, holds_attempts, AttemptsLog};
    let dir = tempfile::tempdir()?;
    let data = fixture("cub-tiny");
    let cfg = RunConfig {
        attempts: 2,
        ..job(&data, 2)
    };
    let straight = dir.path().join("straight");
    let a = run(&cfg, &straight)?;
    let log = AttemptsLog::read(&straight)?.ok_or_else(|| anyhow::anyhow!("no attempts.json"))?;
    // cub-tiny: 6 training images in each of 3 classes, one of each held out.
    assert_eq!(log.validation_images, 3);
    let seeds: Vec<u64> = log.attempts.iter().map(|r| r.seed).collect();
    assert_eq!(seeds, [5, 6]);
    // The kept attempt is the most accurate on validation, the first of equals.
    let top = log
        .attempts
        .iter()
        .map(|r| r.validation_accuracy)
        .fold(f64::MIN, f64::max);
    let first_top = log
        .attempts
        .iter()
        .position(|r| r.validation_accuracy == top);
    assert_eq!(log.chosen, first_top);
    let chosen = log.chosen.ok_or_else(|| anyhow::anyhow!("none chosen"))?;
    // The run's model and log are the kept attempt's.
    let kept = attempt_dir(&straight, chosen);
    assert_eq!(tensors(&straight)?, tensors(&kept)?);
    assert_eq!(
        std::fs::read_to_string(straight.join("metrics.jsonl"))?,
        std::fs::read_to_string(kept.join("metrics.jsonl"))?
    );
    assert_eq!(a.history.len(), 2);

    // Interrupted in the second attempt's second epoch and resumed: the same attempts,
    // choice and model.
    let broken = dir.path().join("broken");
    let err = StopAfter::epochs(3).train(&cfg, &broken).unwrap_err();
    assert!(err.to_string().contains("interrupt"), "{err}");
    assert!(holds_attempts(&broken));
    let partial = AttemptsLog::read(&broken)?.ok_or_else(|| anyhow::anyhow!("no log"))?;
    assert_eq!(partial.attempts.len(), 1);
    let b = resume(&cfg, &broken)?;
    let resumed = AttemptsLog::read(&broken)?.ok_or_else(|| anyhow::anyhow!("no log"))?;
    let scores = |l: &AttemptsLog| {
        l.attempts
            .iter()
            .map(|r| {
                (
                    r.attempt,
                    r.seed,
                    r.validation_accuracy,
                    r.final_train_accuracy,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(scores(&resumed), scores(&log));
    assert_eq!(resumed.chosen, log.chosen);
    assert_eq!(tensors(&straight)?, tensors(&broken)?);
    assert_eq!(a.test.accuracy_soft, b.test.accuracy_soft);
    // A new run in its directory is refused; replacing it starts over.
    let err = run(&cfg, &broken).unwrap_err().to_string();
    assert!(err.contains("already holds a training run"), "{err}");
    // So is a new single run (the top level has no checkpoint of its own); a single run
    // replacing it keeps none of its attempts.
    let single = RunConfig {
        attempts: 1,
        ..cfg.clone()
    };
    let err = run(&single, &broken).unwrap_err().to_string();
    assert!(err.contains("already holds a training run"), "{err}");
    run_with(
        &single,
        &broken,
        RunMode::Overwrite,
        &Interrupter::new(),
        &mut (),
    )?;
    assert!(!holds_attempts(&broken));
    assert!(AttemptsLog::read(&broken)?.is_none());

    // With a bar every attempt reaches, the first attempt is kept and no other trains.
    let first = dir.path().join("first");
    let easy = RunConfig {
        stop_at_validation: Some(0.0),
        ..cfg.clone()
    };
    run(&easy, &first)?;
    let one = AttemptsLog::read(&first)?.ok_or_else(|| anyhow::anyhow!("no log"))?;
    assert_eq!((one.attempts.len(), one.chosen), (1, Some(0)));
    assert!(!attempt_dir(&first, 1).exists());
    run_with(
        &easy,
        &first,
        RunMode::Overwrite,
        &Interrupter::new(),
        &mut (),
    )?;

    // Bad settings are refused before any training.
    for (bad, key) in [
        (
            RunConfig {
                attempts: 0,
                ..cfg.clone()
            },
            "attempts",
        ),
        (
            RunConfig {
                validation_share: 1.0,
                ..cfg.clone()
            },
            "validation_share",
        ),
        (
            RunConfig {
                stop_at_validation: Some(f64::NAN),
                ..cfg.clone()
            },
            "stop_at_validation",
        ),
    ] {
        let err = run(&bad, &dir.path().join("bad")).unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
    Ok(())
}

#[test]
fn flip_alignment_trains_its_term_and_is_recorded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = fixture("cub-tiny");
    let plain = run(&job(&data, 2), &dir.path().join("plain"))?;
    let mut cfg = job(&data, 2);
    cfg.schedule.flip_alignment = 1.0;
    let aligned_dir = dir.path().join("aligned");
    let aligned = run(&cfg, &aligned_dir)?;
    // The term changes the training (the loss logged is the objective with the term).
    assert!(aligned.history.iter().all(|e| e.train_loss.is_finite()));
    assert_ne!(tensors(&dir.path().join("plain"))?, tensors(&aligned_dir)?);
    assert_ne!(plain.history[0].train_loss, aligned.history[0].train_loss);
    // The run records it; resuming with another weight is refused, naming it.
    let toml = std::fs::read_to_string(aligned_dir.join("run.toml"))?;
    assert!(toml.contains("flip_alignment = 1.0"), "{toml}");
    let mut other = cfg.clone();
    other.schedule.epochs = 3;
    other.schedule.flip_alignment = 0.5;
    let err = resume(&other, &aligned_dir).unwrap_err().to_string();
    assert!(err.contains("flip_alignment"), "{err}");
    // A negative weight is refused before training.
    cfg.schedule.flip_alignment = -1.0;
    let err = run(&cfg, &dir.path().join("bad")).unwrap_err().to_string();
    assert!(err.contains("flip_alignment"), "{err}");
    Ok(())
}

#[test]
fn input_noise_trains_seeded_resumes_bit_identical_and_is_recorded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = fixture("cub-tiny");
    let mut cfg = job(&data, 2);
    cfg.schedule.batch_size = 4;
    let plain_dir = dir.path().join("plain");
    run(&cfg, &plain_dir)?;
    cfg.schedule.input_noise = 0.2;
    let noisy_dir = dir.path().join("noisy");
    let noisy = run(&cfg, &noisy_dir)?;
    // The noise changes the training, and the run records it.
    assert_ne!(tensors(&plain_dir)?, tensors(&noisy_dir)?);
    let toml = std::fs::read_to_string(noisy_dir.join("run.toml"))?;
    assert!(toml.contains("input_noise = 0.2"), "{toml}");
    // Stopped mid-run and resumed: the same noise, so the same model.
    let broken = dir.path().join("broken");
    let err = StopAfter::batches(3).train(&cfg, &broken).unwrap_err();
    assert!(err.to_string().contains("interrupt"), "{err}");
    let resumed = resume(&cfg, &broken)?;
    assert_eq!(tensors(&noisy_dir)?, tensors(&broken)?);
    assert_eq!(noisy.test.accuracy_soft, resumed.test.accuracy_soft);
    // Noise from an epoch after the last is no noise; from the second epoch it is
    // another run again.
    let mut late = cfg.clone();
    late.schedule.input_noise_from_epoch = 3;
    let late_dir = dir.path().join("late");
    run(&late, &late_dir)?;
    assert_eq!(tensors(&plain_dir)?, tensors(&late_dir)?);
    late.schedule.input_noise_from_epoch = 2;
    let second_dir = dir.path().join("second");
    run(&late, &second_dir)?;
    assert_ne!(tensors(&plain_dir)?, tensors(&second_dir)?);
    assert_ne!(tensors(&noisy_dir)?, tensors(&second_dir)?);
    // Resuming with another sigma is refused, naming it; a negative one before training.
    let mut other = cfg.clone();
    other.schedule.epochs = 3;
    other.schedule.input_noise = 0.1;
    let err = resume(&other, &noisy_dir).unwrap_err().to_string();
    assert!(err.contains("input_noise"), "{err}");
    cfg.schedule.input_noise = -0.1;
    let err = run(&cfg, &dir.path().join("bad")).unwrap_err().to_string();
    assert!(err.contains("input_noise"), "{err}");
    Ok(())
}
