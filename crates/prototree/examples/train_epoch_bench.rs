//! Whole training epochs over an image data set, data loading included, timed as the
//! `prototree train` command runs them; prints one JSON line with the keys of
//! `benches/reference/train_epoch.py` (its PyTorch twin), for benches/train_compare.sh.
//!
//! Loading (decoding, resizing and caching the training split, as `prototree train` does
//! before its first epoch) is timed apart as `load_s`; each epoch then batches, augments,
//! normalises and trains (forward, NLL, backward, AdamW on the three groups, leaf update).
//! No evaluation. The process allocates as the CLI does (mimalloc, default options).
//!
//! ```text
//! cargo run --release -p prototree --example train_epoch_bench -- --data DIR \
//!     --backbone small-cnn --size 64 --batch 32 --depth 5 --features 64 --epochs 3 \
//!     --augmentation flip --lr 2e-3 --lr-block 2e-3 --lr-net 2e-3 --freeze-epochs 0 --threads 2
//! ```
//! `--max-batches N` trains only the first N batches of each epoch (CUB-scale sets);
//! `--protocol reference|plain` as `prototree train` (default plain: the PyTorch twin
//! reads each image once per epoch).

mod common;

use std::time::Instant;

use anyhow::{bail, Context, Result};
use prototree::candle_core::Device;
use prototree::data::{Augmentation, Dataset, Loader, Protocol, Role, Split};
use prototree::prelude::*;
use prototree::source::LoaderSource;
use prototree::tree::{Batch, BatchSource};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The first `n` batches of each epoch of `inner`.
struct FirstBatches<'a> {
    inner: LoaderSource<'a>,
    n: usize,
}

impl BatchSource for FirstBatches<'_> {
    fn num_batches(&self) -> usize {
        self.inner.num_batches().min(self.n)
    }

    fn batches(
        &mut self,
        epoch: usize,
    ) -> Box<dyn Iterator<Item = prototree::tree::Result<Batch>> + '_> {
        let n = self.n;
        Box::new(self.inner.batches(epoch).take(n))
    }
}

/// Wall-clock instants at which each batch of the current epoch finished.
#[derive(Default)]
struct Clock {
    epoch_start: Option<Instant>,
    steps_ms: Vec<f64>,
    last: Option<Instant>,
}

impl Observer for Clock {
    fn on_event(&mut self, event: &Event<'_>) {
        match event {
            Event::EpochStarted { .. } => {
                let now = Instant::now();
                self.epoch_start = Some(now);
                self.last = Some(now);
            }
            Event::BatchFinished(_) => {
                let now = Instant::now();
                if let Some(last) = self.last {
                    self.steps_ms.push((now - last).as_secs_f64() * 1e3);
                }
                self.last = Some(now);
            }
            _ => {}
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> Result<()> {
    let start = Instant::now();
    let mut cfg = Recipe::Scratch.preset();
    cfg.schedule.protocol = Some(Protocol::Plain);
    cfg.augmentation = Augmentation::Flip;
    let mut max_batches = usize::MAX;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        if common::run_config_flag(&mut cfg, &a, &v)? {
            continue;
        }
        let s = &mut cfg.schedule;
        match a.as_str() {
            "--depth" => cfg.depth = v.parse()?,
            "--features" => cfg.proto_dim = v.parse()?,
            "--max-batches" => max_batches = v.parse()?,
            "--protocol" => s.protocol = Some(v.parse()?),
            "--lr" => s.lr = v.parse()?,
            "--lr-block" => s.lr_block = v.parse()?,
            "--lr-net" => s.lr_net = v.parse()?,
            "--freeze-epochs" => s.freeze_epochs = v.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    // No decay inside a benchmark's few epochs.
    cfg.schedule.milestones.clear();
    let cfg = cfg.settled(true);
    cfg.check(std::path::Path::new("the flags"))?;
    let dataset = Dataset::open(&cfg.data).with_context(|| cfg.data.display().to_string())?;
    let loader_cfg = cfg.training_loader_config();
    let views = cfg.schedule.protocol_or_default().view_list(
        Role::Train,
        dataset.samples(Split::Train),
        cfg.crop_to_bbox,
    );
    let load_start = Instant::now();
    let train = Loader::with_views(views, loader_cfg, &mut |_, _| {})?;
    let load_s = load_start.elapsed().as_secs_f64();
    let dev = Device::Cpu;
    let tree = cfg.tree(dataset.class_names().len()).check()?;
    let model = ProtoTree::new(&tree, &dev, cfg.schedule.seed)?;
    let mut learner = Learner::builder(model, &cfg.schedule).build()?;
    let mut source = FirstBatches {
        inner: LoaderSource::new(&train, &dev, cfg.schedule.seed),
        n: max_batches,
    };
    let setup_s = start.elapsed().as_secs_f64();
    let (mut epoch_s, mut rates, mut accs) = (Vec::new(), Vec::new(), Vec::new());
    let mut clock = Clock::default();
    let batches = source.num_batches();
    let images = (batches * cfg.schedule.batch_size).min(train.len());
    for _ in 0..cfg.schedule.epochs {
        let stats = learner.train_epoch(&mut source, None, &mut clock)?;
        epoch_s.push(stats.seconds);
        rates.push(images as f64 / stats.seconds);
        accs.push(stats.train_accuracy);
    }
    println!(
        "{}",
        serde_json::json!({
            "epoch_s": epoch_s,
            "images_per_s": rates,
            "step_ms": median(&mut clock.steps_ms),
            "train_accuracy": accs,
            "batches_per_epoch": batches,
            "train_images": train.len(),
            "load_s": load_s,
            "setup_s": setup_s,
            "total_s": start.elapsed().as_secs_f64(),
            "peak_rss_mb": common::peak_rss_mb(),
            "backbone": cfg.backbone.name(),
            "size": cfg.image_size,
            "batch": cfg.schedule.batch_size,
            "depth": cfg.depth,
            "protocol": cfg.schedule.protocol_or_default().name(),
            "threads": std::env::var("RAYON_NUM_THREADS").unwrap_or_default(),
        })
    );
    Ok(())
}
