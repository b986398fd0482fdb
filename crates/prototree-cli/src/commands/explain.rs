//! `prototree explain`: the path, prototypes, patches and heatmaps per image.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use prototree::prelude::*;

use super::{check_image_files, output_dir, path_text, DeviceArg};
use crate::progress::CliProgress;

/// `prototree explain`.
#[derive(Args)]
pub struct ExplainArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Images to explain.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Output directory (one sub-directory with index.html and explanation.json per image).
    #[arg(long)]
    out: PathBuf,
    /// Print the index (predictions and paths) as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

/// Writes one explanation page per image and prints each prediction with its path.
pub fn run(a: ExplainArgs, obs: &mut CliProgress) -> Result<()> {
    output_dir(&a.out)?;
    check_image_files(&a.images)?;
    let saved = a.device.load_model(&a.model)?;
    let done = explain_images(&saved, &a.images, None, &a.out, obs)
        .with_context(|| format!("explaining with {}", a.model.display()))?;
    if a.json {
        let index = std::fs::read_to_string(a.out.join("index.json"))?;
        println!("{index}");
        return Ok(());
    }
    for e in &done {
        let steps = e.explanation.steps.iter().map(|s| (s.node, s.present));
        println!(
            "{}: {} (p = {:.3}) via {}  → {}",
            e.image.display(),
            e.class_name,
            e.explanation
                .probabilities
                .get(e.class_index)
                .copied()
                .unwrap_or(0.0),
            path_text(steps),
            e.page.display()
        );
    }
    println!("(node+ = prototype present, node- = absent)");
    Ok(())
}
