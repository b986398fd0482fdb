//! The backbone warm-up: it trains the backbone (and nothing else) with a temporary
//! linear classifier, is logged, runs once per run (a resumed run skips it), and an
//! interrupt during it saves nothing.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{Squares, CLASSES};
use prototree_backbone::BackboneKind;
use prototree_learn::warmup::{read_warmup_log, warm_up_backbone};
use prototree_learn::{load_checkpoint, Error, Interrupter, Learner, RunDir, RunMode, WARMUP_FILE};
use prototree_tree::io::Preprocessing;
use prototree_tree::{Event, ModelMeta, Observer, ProtoTree, Stage, TrainConfig, TreeConfig};

fn tree() -> TreeConfig {
    TreeConfig {
        backbone: BackboneKind::SmallCnn,
        depth: 2,
        proto_dim: 8,
        num_classes: CLASSES,
    }
}

fn model(seed: u64) -> anyhow::Result<ProtoTree> {
    Ok(ProtoTree::new(&tree().check()?, &Device::Cpu, seed)?)
}

fn meta() -> ModelMeta {
    ModelMeta {
        format_version: 1,
        tree: tree(),
        class_names: (0..CLASSES).map(|c| c.to_string()).collect(),
        preprocessing: Preprocessing {
            image_size: common::SIZE as u32,
            mean: [0.5; 3],
            std: [0.25; 3],
        },
        train: None,
    }
}

fn schedule(warmup: usize, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        lr: 5e-3,
        lr_block: 5e-3,
        lr_net: 5e-3,
        freeze_epochs: 0,
        seed: 3,
        backbone_warmup_epochs: warmup,
        ..TrainConfig::default()
    }
}

/// Every variable's values by name.
fn snapshot(model: &ProtoTree) -> anyhow::Result<Vec<(String, Vec<f32>)>> {
    let data = model
        .varmap()
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?;
    let mut out: Vec<(String, Vec<f32>)> = data
        .iter()
        .map(|(n, v)| -> anyhow::Result<_> {
            Ok((
                n.clone(),
                v.as_tensor()
                    .flatten_all()?
                    .to_dtype(DType::F32)?
                    .to_vec1()?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[derive(Default)]
struct Recorder {
    warmup_batches: usize,
    messages: Vec<String>,
    in_warmup: bool,
}

impl Observer for Recorder {
    fn on_event(&mut self, event: &Event<'_>) {
        match event {
            Event::StageStarted {
                stage: Stage::WarmUp,
                total,
            } => {
                self.in_warmup = true;
                self.warmup_batches = *total;
            }
            Event::StageFinished(Stage::WarmUp) => self.in_warmup = false,
            Event::Message(m) => self.messages.push(m.to_string()),
            _ => {}
        }
    }
}

#[test]
fn the_warm_up_trains_the_backbone_alone_and_learns_the_task() -> anyhow::Result<()> {
    let model = model(3)?;
    let before = snapshot(&model)?;
    let mut train = Squares::new(96, 1, 16);
    let valid = schedule(6, 1).check()?;
    let mut rec = Recorder::default();
    let epochs = warm_up_backbone(&model, &valid, &mut train, &Interrupter::new(), &mut rec)?;
    assert_eq!(epochs.len(), 6);
    assert_eq!(rec.warmup_batches, 6 * 6);
    assert!(!rec.in_warmup, "the stage was finished");
    assert_eq!(rec.messages.len(), 6, "{:?}", rec.messages);
    assert!(
        epochs[5].loss < epochs[0].loss && epochs[5].accuracy >= 0.9,
        "the linear classifier learns the squares: {epochs:?}"
    );
    let after = snapshot(&model)?;
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        let changed = b != a;
        let trainable = name.starts_with("_net.") && !name.ends_with("num_batches_tracked");
        assert_eq!(changed, trainable, "{name}: changed {changed}");
    }
    Ok(())
}

#[test]
fn a_run_warms_up_once_and_resuming_skips_it() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("run");
    let meta = meta();
    let build = |mode: RunMode, epochs: usize| -> anyhow::Result<Learner> {
        let run = RunDir::open(&root, mode)?;
        let builder = match mode {
            RunMode::Resume => Learner::resume(
                load_checkpoint(&run.last_checkpoint(), &Device::Cpu)?,
                &schedule(3, epochs),
            ),
            _ => Learner::builder(model(3)?, &schedule(3, epochs)),
        };
        Ok(builder.with_run_dir(run, meta.clone()).build()?)
    };
    let mut train = Squares::new(48, 1, 16);
    let mut learner = build(RunMode::New, 1)?;
    learner.fit(&mut train, None, &mut ())?;
    assert_eq!(learner.warmup().len(), 3);
    let logged = read_warmup_log(&root.join(WARMUP_FILE))?;
    // JSON keeps the values up to the last bit of the parser.
    let close = |a: &[prototree_learn::WarmupEpoch], b: &[prototree_learn::WarmupEpoch]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.epoch == y.epoch && (x.loss - y.loss).abs() < 1e-12 && x.accuracy == y.accuracy
            })
    };
    assert!(close(&logged, learner.warmup()), "{logged:?}");
    let one_epoch = snapshot(learner.model())?;

    // Resumed for a second epoch: no second warm-up, the log stays.
    let mut rec = Recorder::default();
    let mut resumed = build(RunMode::Resume, 2)?;
    resumed.fit(&mut train, None, &mut rec)?;
    assert!(resumed.warmup().is_empty() && rec.warmup_batches == 0);
    assert_eq!(read_warmup_log(&root.join(WARMUP_FILE))?, logged);

    // The same two epochs in one go give the same model (the warm-up is not repeated).
    let other = tmp.path().join("other");
    let run = RunDir::open(&other, RunMode::New)?;
    let mut straight = Learner::builder(model(3)?, &schedule(3, 2))
        .with_run_dir(run, meta.clone())
        .build()?;
    straight.fit(&mut train, None, &mut ())?;
    assert_eq!(snapshot(straight.model())?, snapshot(resumed.model())?);
    assert_ne!(snapshot(resumed.model())?, one_epoch);
    Ok(())
}

#[test]
fn an_interrupted_warm_up_saves_nothing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("run");
    let meta = meta();
    let interrupter = Interrupter::new();
    interrupter.stop();
    let mut learner = Learner::builder(model(3)?, &schedule(2, 1))
        .with_run_dir(RunDir::open(&root, RunMode::New)?, meta)
        .with_interrupter(interrupter)
        .build()?;
    let err = learner
        .fit(&mut Squares::new(32, 1, 16), None, &mut ())
        .unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err}");
    assert!(!prototree_learn::checkpoint_exists(
        &root.join("checkpoints/last")
    ));
    assert!(!root.join(WARMUP_FILE).exists());
    Ok(())
}

#[test]
fn a_schedule_without_warm_up_does_none() -> anyhow::Result<()> {
    let model = model(3)?;
    let valid = schedule(0, 1).check()?;
    let mut rec = Recorder::default();
    let epochs = warm_up_backbone(
        &model,
        &valid,
        &mut Squares::new(16, 1, 16),
        &Interrupter::new(),
        &mut rec,
    )?;
    assert!(epochs.is_empty() && rec.messages.is_empty());
    let _ = Tensor::zeros(1, DType::F32, &Device::Cpu)?;
    Ok(())
}
