//! `prototree import` (reference checkpoints) and `prototree predict`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use prototree::candle_device;
use prototree::prelude::*;
use prototree::reference::{import_reference, ImportOptions};
use prototree::tree::Routing;

use crate::progress::CliProgress;

/// `prototree import`.
#[derive(Args)]
pub struct ImportArgs {
    /// Checkpoint directory saved by the PyTorch reference (model_state.pth, tree.pkl / model.pth).
    #[arg(long)]
    reference: PathBuf,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    /// File with one class name per line (default: class_000, class_001, …).
    #[arg(long)]
    class_names: Option<PathBuf>,
    /// Input side in pixels the model was trained at (default 224).
    #[arg(long)]
    image_size: Option<u32>,
    /// Print the import report as JSON.
    #[arg(long)]
    json: bool,
}

/// `prototree predict`.
#[derive(Args)]
pub struct PredictArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Image files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Routing: soft, greedy or max-leaf.
    #[arg(long, default_value = "soft")]
    routing: Routing,
    /// One JSON object per image and line.
    #[arg(long)]
    json: bool,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run_import(a: ImportArgs) -> Result<()> {
    let class_names = match &a.class_names {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading class names from {}", path.display()))?;
            let names: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            if names.is_empty() {
                bail!("{}: no class names", path.display());
            }
            Some(names)
        }
        None => None,
    };
    let opts = ImportOptions {
        class_names,
        image_size: a.image_size,
        stage: None,
    };
    let report = import_reference(&a.reference, &a.out, &opts)
        .with_context(|| format!("importing {}", a.reference.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "imported {} into {}",
            a.reference.display(),
            a.out.display()
        );
        let v = serde_json::to_value(&report)?;
        for key in [
            "backbone",
            "depth",
            "num_classes",
            "num_decisions",
            "pruned",
        ] {
            if let Some(x) = v.get(key) {
                println!("  {key}: {x}");
            }
        }
    }
    Ok(())
}

pub fn run_predict(a: PredictArgs, obs: &mut CliProgress) -> Result<()> {
    for image in &a.images {
        if !image.is_file() {
            bail!("{}: no such image file", image.display());
        }
    }
    let device = candle_device(&a.device)?;
    let saved =
        load_model(&a.model, &device).with_context(|| format!("loading {}", a.model.display()))?;
    let obs: &mut dyn Observer = obs;
    obs.stage_started(Stage::Evaluate, a.images.len());
    let preds = prototree::predict::predict_images(&saved, &a.images, a.routing, &mut |done| {
        obs.stage_progress(done)
    })
    .with_context(|| format!("predicting with {}", a.model.display()))?;
    obs.stage_finished(Stage::Evaluate);
    for p in &preds {
        if a.json {
            println!("{}", serde_json::to_string(p)?);
        } else {
            let path: Vec<String> = p
                .path
                .iter()
                .map(|s| format!("{}{}", s.node, if s.present { "+" } else { "-" }))
                .collect();
            println!(
                "{}: {} (p = {:.3})  path {}",
                p.image.display(),
                p.class_name,
                p.probabilities.get(p.class_index).copied().unwrap_or(0.0),
                path.join(" ")
            );
        }
    }
    Ok(())
}
