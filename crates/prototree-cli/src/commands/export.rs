//! `prototree export`: the decision tree as DOT, SVG or JSON.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use prototree::prelude::*;

/// `prototree export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Format: dot, svg (self-contained, no Graphviz needed) or json.
    #[arg(long, default_value = "svg")]
    format: ExportFormat,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

/// Writes the tree and prints where.
pub fn run(a: ExportArgs) -> Result<()> {
    if a.out.is_dir() {
        bail!("{}: is a directory, expected a file name", a.out.display());
    }
    let device = prototree::candle_core::Device::Cpu;
    let o = export_model_dir(&a.model, a.format, &a.out, &device)
        .with_context(|| format!("exporting {}", a.model.display()))?;
    println!(
        "wrote {} ({} decisions, {} leaves)",
        o.path.display(),
        o.num_decisions,
        o.num_leaves
    );
    if !o.patch_images.is_empty() {
        let dir = o.patch_images[0].parent().map(|p| p.display().to_string());
        println!(
            "  {} patch images in {}; render with: dot -Tsvg {} -o tree.svg",
            o.patch_images.len(),
            dir.unwrap_or_default(),
            o.path.display()
        );
    }
    Ok(())
}
