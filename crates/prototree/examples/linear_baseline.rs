//! The plain-CNN baseline a prototype tree is compared with: the same backbone, global
//! average pooling and a linear classifier, trained with cross-entropy on the same data,
//! batches, augmentation and learning-rate schedule as `prototree train` (the `scratch`
//! recipe's settings unless a flag changes them). It answers "what does the tree cost in
//! accuracy?" (docs/results.md, "A harder design").
//!
//! ```text
//! cargo run --release -p prototree --example linear_baseline -- --data DIR --size 96 \
//!     --epochs 60 --milestones 42,51 --threads 2
//! ```
//!
//! Flags: `--backbone` (default small-cnn), `--size`, `--batch`, `--epochs`, `--milestones
//! A,B` (learning rate times `--gamma` after those epochs), `--lr` (every parameter; the
//! recipe's backbone rate by default), `--augmentation`, `--seed`, `--eval-every N` (test
//! accuracy every N epochs; 0 only at the end), `--threads`. Each epoch prints one line to
//! stderr; the last line on stdout is a JSON summary (test accuracy, per-epoch training
//! accuracy and time, total wall time). `--save-backbone PATH` writes the trained weights
//! as a state dict that `prototree train --weights PATH` loads.
//!
//! Parameters are initialised as the tree's are (`prototree::tree::init`: Kaiming-normal
//! convolutions, BatchNorm 1 / 0); the linear layer's weight uniform in ±1/√fan-in, its
//! bias 0. The optimiser is AdamW with the recipe's epsilon and weight decay.

mod common;

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use prototree::backbone::{build_backbone, Backbone};
use prototree::candle_core::{self as candle_core, DType, Device, Tensor};
use prototree::learn::linear_head::{accuracy, cross_entropy, LinearHead};
use prototree::prelude::*;
use prototree::source::LoaderSource;
use prototree::train::load_data;
use prototree::tree::{init, BatchSource};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Backbone, global average pooling, linear layer.
struct Baseline {
    backbone: Box<dyn Backbone>,
    head: LinearHead,
}

impl Baseline {
    fn new(cfg: &RunConfig, classes: usize, varmap: &VarMap, dev: &Device) -> Result<Self> {
        let vb = VarBuilder::from_varmap(varmap, DType::F32, dev);
        let backbone = build_backbone(cfg.backbone, vb.pp(init::BACKBONE_PREFIX))?;
        init::initialize(varmap, cfg.schedule.seed, dev)?;
        let head = LinearHead::new(
            classes,
            backbone.out_channels(),
            cfg.schedule.seed,
            "fc",
            dev,
        )?;
        Ok(Self { backbone, head })
    }

    /// Class logits `(b, k)`.
    fn logits(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.head.logits(&self.backbone.features(images, train)?)?)
    }
}

/// Correct predictions among the `b` images of a batch.
fn correct(logits: &Tensor, labels: &Tensor, b: usize) -> Result<usize> {
    Ok((accuracy(logits, labels)? * b as f32).round() as usize)
}

fn test_accuracy(model: &Baseline, source: &mut LoaderSource<'_>) -> Result<f64> {
    let (mut hits, mut n) = (0usize, 0usize);
    for batch in source.batches(1) {
        let batch = batch?;
        let b = batch.labels.dims1()?;
        hits += correct(&model.logits(&batch.images, false)?, &batch.labels, b)?;
        n += b;
    }
    Ok(hits as f64 / n.max(1) as f64)
}

/// Writes the trained backbone as a PyTorch-style state dict (names without the tree's
/// prefix): `prototree train --weights PATH` starts a tree from this backbone.
fn save_state_dict(varmap: &VarMap, path: &std::path::Path) -> Result<()> {
    let prefix = format!("{}.", init::BACKBONE_PREFIX);
    let data = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("parameter map lock poisoned"))?;
    let tensors: std::collections::HashMap<String, Tensor> = data
        .iter()
        .map(|(name, var)| {
            let name = name.strip_prefix(&prefix).unwrap_or(name).to_string();
            (name, var.as_tensor().clone())
        })
        .collect();
    candle_core::safetensors::save(&tensors, path)
        .with_context(|| format!("writing {}", path.display()))
}

fn main() -> Result<()> {
    let start = Instant::now();
    let mut cfg = Recipe::Scratch.preset();
    let (mut lr, mut eval_every, mut save_backbone) = (None, 0usize, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().with_context(|| format!("{a} needs a value"))?;
        if common::run_config_flag(&mut cfg, &a, &v)? {
            continue;
        }
        let s = &mut cfg.schedule;
        match a.as_str() {
            "--milestones" => {
                s.milestones = v
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--milestones: comma-separated epochs")?
            }
            "--gamma" => s.gamma = v.parse()?,
            "--lr" => lr = Some(v.parse::<f64>()?),
            "--eval-every" => eval_every = v.parse()?,
            "--save-backbone" => save_backbone = Some(std::path::PathBuf::from(v)),
            other => bail!("unknown argument {other}"),
        }
    }
    let cfg = cfg.settled(true);
    cfg.check(std::path::Path::new("the flags"))?;
    let lr = lr.unwrap_or(cfg.schedule.lr_net);
    let data = load_data(&cfg, &mut ()).with_context(|| cfg.data.display().to_string())?;
    let classes = data.dataset.class_names().len();
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let model = Baseline::new(&cfg, classes, &varmap, &dev)?;
    let mut vars = varmap.all_vars();
    vars.extend(model.head.named_vars().into_iter().map(|(_, v)| v));
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr,
            eps: cfg.schedule.adam_eps,
            weight_decay: cfg.schedule.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let mut train_src = LoaderSource::new(&data.train, &dev, cfg.schedule.seed);
    let mut test_src = LoaderSource::new(&data.test, &dev, cfg.schedule.seed);
    let (mut train_acc, mut epoch_s, mut test_curve) = (Vec::new(), Vec::new(), Vec::new());
    let epochs = cfg.schedule.epochs;
    for epoch in 1..=epochs {
        let decays = cfg
            .schedule
            .milestones
            .iter()
            .filter(|&&m| m < epoch)
            .count();
        opt.set_learning_rate(lr * cfg.schedule.gamma.powi(decays as i32));
        let t = Instant::now();
        let (mut hits, mut n, mut loss_sum) = (0usize, 0usize, 0f64);
        for batch in train_src.batches(epoch) {
            let batch = batch?;
            let logits = model.logits(&batch.images, true)?;
            let loss = cross_entropy(&logits, &batch.labels)?;
            opt.backward_step(&loss)?;
            let b = batch.labels.dims1()?;
            hits += correct(&logits, &batch.labels, b)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * b as f64;
            n += b;
        }
        let acc = hits as f64 / n.max(1) as f64;
        train_acc.push(acc);
        epoch_s.push(t.elapsed().as_secs_f64());
        let mut line = format!(
            "epoch {epoch}/{epochs}: loss {:.4}, training accuracy {:.1}%, {:.1} s",
            loss_sum / n.max(1) as f64,
            100.0 * acc,
            t.elapsed().as_secs_f64()
        );
        if eval_every > 0 && epoch % eval_every == 0 && epoch < epochs {
            let test = test_accuracy(&model, &mut test_src)?;
            test_curve.push((epoch, test));
            line += &format!(", test accuracy {:.1}%", 100.0 * test);
        }
        eprintln!("{line}");
    }
    let test = test_accuracy(&model, &mut test_src)?;
    test_curve.push((epochs, test));
    eprintln!("test accuracy {:.1}%", 100.0 * test);
    if let Some(path) = &save_backbone {
        save_state_dict(&varmap, path)?;
    }
    println!(
        "{}",
        serde_json::json!({
            "test_accuracy": test,
            "test_curve": test_curve,
            "train_accuracy": train_acc,
            "epoch_s": epoch_s,
            "total_s": start.elapsed().as_secs_f64(),
            "peak_rss_mb": common::peak_rss_mb(),
            "backbone": cfg.backbone.name(),
            "size": cfg.image_size,
            "batch": cfg.schedule.batch_size,
            "epochs": epochs,
            "milestones": cfg.schedule.milestones,
            "lr": lr,
            "augmentation": format!("{:?}", cfg.augmentation),
            "train_images": data.train.len(),
            "test_images": data.test.len(),
            "seed": cfg.schedule.seed,
            "threads": std::env::var("RAYON_NUM_THREADS").unwrap_or_default(),
        })
    );
    Ok(())
}
