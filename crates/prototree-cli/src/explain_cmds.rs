//! The interpretation commands: `explain`, `export` and `report`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use prototree::candle_device;
use prototree::prelude::*;

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
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

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

/// `prototree report`.
#[derive(Args)]
pub struct ReportArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Data set in CUB layout: its test split gives accuracies and explained examples.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output HTML file (default: MODEL/report.html).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Test images to explain and link (needs --data).
    #[arg(long, default_value_t = 8)]
    explain: usize,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run_explain(a: ExplainArgs, obs: &mut CliProgress) -> Result<()> {
    if a.out.is_file() {
        bail!(
            "{}: exists and is a file, expected a directory",
            a.out.display()
        );
    }
    for image in &a.images {
        if !image.is_file() {
            bail!("{}: no such image file", image.display());
        }
    }
    let device = candle_device(&a.device)?;
    let saved =
        load_model(&a.model, &device).with_context(|| format!("loading {}", a.model.display()))?;
    let done = explain_images(&saved, &a.images, None, &a.out, obs)
        .with_context(|| format!("explaining with {}", a.model.display()))?;
    if a.json {
        let index = std::fs::read_to_string(a.out.join("index.json"))?;
        println!("{index}");
        return Ok(());
    }
    for e in &done {
        let path: Vec<String> = e
            .explanation
            .steps
            .iter()
            .map(|s| format!("{}{}", s.node, if s.present { "+" } else { "-" }))
            .collect();
        println!(
            "{}: {} (p = {:.3}) via {}  → {}",
            e.image.display(),
            e.class_name,
            e.explanation
                .probabilities
                .get(e.class_index)
                .copied()
                .unwrap_or(0.0),
            path.join(" "),
            e.page.display()
        );
    }
    println!("(node+ = prototype present, node- = absent)");
    Ok(())
}

pub fn run_export(a: ExportArgs) -> Result<()> {
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

pub fn run_report(a: ReportArgs, obs: &mut CliProgress) -> Result<()> {
    let device = candle_device(&a.device)?;
    let out = a.out.unwrap_or_else(|| a.model.join("report.html"));
    let path = report_model_dir(&a.model, a.data.as_deref(), &out, a.explain, &device, obs)
        .with_context(|| format!("writing the report of {}", a.model.display()))?;
    println!("report: {}", path.display());
    Ok(())
}
