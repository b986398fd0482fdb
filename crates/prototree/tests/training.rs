//! Training on the committed fixtures (CUB layout and ImageFolder layout), checkpoints,
//! bit-identical resume, `--quick`, run configuration files.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{fixtures, small_job};
use prototree::candle_core::{Device, Tensor};
use prototree::data::Augmentation;
use prototree::prelude::*;
use prototree::train::{best_checkpoint_dir, last_checkpoint_dir};
use prototree::tree::{load_checkpoint, EpochStats, TrainObserver};

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

fn job(data: &Path, out: &Path, epochs: usize) -> TrainJob {
    let train = TrainConfig {
        epochs,
        batch_size: 8,
        lr: 2e-3,
        lr_block: 2e-3,
        lr_net: 2e-3,
        freeze_epochs: 1,
        milestones: vec![2],
        seed: 5,
        ..TrainConfig::default()
    };
    TrainJob {
        augmentation: Augmentation::Flip,
        eval_every: 1,
        ..small_job(data, out, train)
    }
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
        let outcome = train(&job(&fixture(name), &out, 2), &mut Silent)?;
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
}
impl StopAfter {
    fn epochs(limit: usize) -> Self {
        Self {
            limit,
            per_batch: false,
            seen: 0,
        }
    }
    fn batches(limit: usize) -> Self {
        Self {
            limit,
            per_batch: true,
            seen: 0,
        }
    }
}
impl TrainObserver for StopAfter {
    fn batch_finished(&mut self, _stats: &prototree::tree::BatchStats) {
        self.seen += usize::from(self.per_batch);
    }
    fn epoch_finished(&mut self, _stats: &EpochStats) {
        self.seen += usize::from(!self.per_batch);
    }
    fn should_stop(&self) -> bool {
        self.seen >= self.limit
    }
}
impl PipelineObserver for StopAfter {}

/// Resumes the interrupted run `job` and checks it ends as the uninterrupted `straight` run
/// (its outcome and directory) did: the same tensors, per-epoch losses and test accuracy.
fn resume_and_compare(
    mut job: TrainJob,
    (straight, straight_dir): (&TrainOutcome, &Path),
) -> anyhow::Result<()> {
    job.resume = true;
    let resumed = train(&job, &mut Silent)?;
    assert_eq!(tensors(straight_dir)?, tensors(&job.out)?);
    let losses = |h: &[EpochStats]| h.iter().map(|s| s.train_loss).collect::<Vec<_>>();
    assert_eq!(losses(&straight.history), losses(&resumed.history));
    assert_eq!(straight.test.accuracy_soft, resumed.test.accuracy_soft);
    Ok(())
}

#[test]
fn interrupted_and_resumed_run_is_bit_identical() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = fixture("cub-tiny");
    let straight = dir.path().join("straight");
    let a = train(&job(&data, &straight, 3), &mut Silent)?;
    let broken = dir.path().join("broken");
    let err = train(&job(&data, &broken, 3), &mut StopAfter::epochs(2)).unwrap_err();
    assert!(err.to_string().contains("interrupt"), "{err}");
    assert_eq!(
        load_checkpoint(&last_checkpoint_dir(&broken), &Device::Cpu)?
            .state
            .epochs_done,
        2
    );
    resume_and_compare(job(&data, &broken, 3), (&a, &straight))?;
    let metrics = std::fs::read_to_string(broken.join("metrics.jsonl"))?;
    assert_eq!(metrics.lines().count(), 3);

    // Resuming with another schedule is refused, naming the setting.
    let mut other = job(&data, &broken, 3);
    other.resume = true;
    other.train.lr = 0.5;
    let err = train(&other, &mut Silent).unwrap_err().to_string();
    assert!(err.contains("schedule.lr"), "{err}");
    // Resuming a directory without checkpoints is refused.
    let mut none = job(&data, &dir.path().join("empty"), 3);
    none.resume = true;
    let err = train(&none, &mut Silent).unwrap_err().to_string();
    assert!(err.contains("no checkpoint"), "{err}");
    Ok(())
}

#[test]
fn run_interrupted_mid_epoch_saves_its_batches_and_resumes_bit_identical() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = fixture("cub-tiny");
    let small_batches = |out: &Path| {
        let mut j = job(&data, out, 3);
        j.train.batch_size = 4;
        j
    };
    let straight = dir.path().join("straight");
    let a = train(&small_batches(&straight), &mut Silent)?;
    let ck = load_checkpoint(&last_checkpoint_dir(&straight), &Device::Cpu)?;
    assert!(ck.state.partial_epoch.is_none());

    // Stop in the middle of the second epoch.
    let broken = dir.path().join("broken");
    let batches_per_epoch = {
        let mut probe = StopAfter::batches(usize::MAX);
        let probe_dir = dir.path().join("probe");
        let mut j = small_batches(&probe_dir);
        j.train.epochs = 1;
        train(&j, &mut probe)?;
        probe.seen
    };
    assert!(
        batches_per_epoch >= 2,
        "{batches_per_epoch} batches per epoch"
    );
    let stop_at = batches_per_epoch + batches_per_epoch / 2;
    let err = train(&small_batches(&broken), &mut StopAfter::batches(stop_at)).unwrap_err();
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

    resume_and_compare(small_batches(&broken), (&a, &straight))?;
    Ok(())
}

#[test]
fn checkpoint_survives_a_half_written_replacement() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("run");
    train(&job(&fixture("cub-tiny"), &out, 1), &mut Silent)?;
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
fn quick_run_uses_one_epoch_per_phase() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut j = job(&fixture("imagefolder-tiny"), &dir.path().join("q"), 50);
    j.quick = true;
    let outcome = train(&j, &mut Silent)?;
    assert_eq!(outcome.history.len(), 2);
    assert!(outcome.history[0].backbone_frozen && !outcome.history[1].backbone_frozen);
    // About 1% of the data, but at least two training images and one test image per class.
    assert_eq!(outcome.test.num_images, 3);
    Ok(())
}

#[test]
fn ensemble_trains_members_by_seed_and_evaluates() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let j = job(&fixture("cub-tiny"), &dir.path().join("unused"), 1);
    let cfg = j.run_config();
    let out = dir.path().join("ens");
    let dirs = prototree::ensemble::train_ensemble(&cfg, 2, &out, &Device::Cpu, &mut Silent)?;
    assert_eq!(dirs, vec![out.join("tree_1"), out.join("tree_2")]);
    let seeds: Vec<u64> = dirs
        .iter()
        .map(|d| Ok(RunConfig::from_file(&d.join("run.toml"))?.schedule.seed))
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(seeds, vec![5, 6]);
    assert_ne!(tensors(&dirs[0])?, tensors(&dirs[1])?);
    let r = prototree::ensemble::evaluate_ensemble(
        &dirs,
        &fixture("cub-tiny"),
        &Device::Cpu,
        &mut Silent,
    )?;
    assert_eq!(r.members.len(), 2);
    assert_eq!(r.num_images, 6);
    assert_eq!(
        r.total_prototypes,
        r.members.iter().map(|m| m.num_prototypes).sum::<usize>()
    );
    assert!((0.0..=1.0).contains(&r.accuracy));
    // Members trained on other classes are refused.
    let other = dir.path().join("other");
    train(&job(&fixture("imagefolder-tiny"), &other, 1), &mut Silent)?;
    let err = prototree::ensemble::evaluate_ensemble(
        &[dirs[0].clone(), other],
        &fixture("cub-tiny"),
        &Device::Cpu,
        &mut Silent,
    );
    // ImageFolder class names are the folder names (with the CUB number prefix), so they differ.
    assert!(err.is_err());
    Ok(())
}
