//! `prototree predict`: class, probabilities and decision path of image files.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use prototree::prelude::*;

use super::{check_image_files, path_text, DeviceArg};
use crate::progress::CliProgress;

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
    #[command(flatten)]
    device: DeviceArg,
}

/// Prints one prediction per image.
pub fn run(a: PredictArgs, obs: &mut CliProgress) -> Result<()> {
    check_image_files(&a.images)?;
    let saved = a.device.load_model(&a.model)?;
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
            println!(
                "{}: {} (p = {:.3})  path {}",
                p.image.display(),
                p.class_name,
                p.probabilities.get(p.class_index).copied().unwrap_or(0.0),
                path_text(p.path.iter().map(|s| (s.node, s.present)))
            );
        }
    }
    Ok(())
}
