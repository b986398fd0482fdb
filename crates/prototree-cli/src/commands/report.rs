//! `prototree report`: the HTML report of a model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use prototree::prelude::*;

use super::DeviceArg;
use crate::progress::CliProgress;

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
    /// Most similar training patches on each prototype's gallery card (needs --data; one
    /// pass over the training split; 0: none).
    #[arg(long, default_value_t = 10)]
    gallery: usize,
    #[command(flatten)]
    device: DeviceArg,
}

/// Writes the report and prints its path.
pub fn run(a: ReportArgs, obs: &mut CliProgress) -> Result<()> {
    let device = a.device.open()?;
    let out = a.out.unwrap_or_else(|| a.model.join("report.html"));
    let opts = prototree::report::ReportOptions {
        explain: a.explain,
        gallery_patches: a.gallery,
    };
    let path = report_model_dir(&a.model, a.data.as_deref(), &out, &opts, &device, obs)
        .with_context(|| format!("writing the report of {}", a.model.display()))?;
    println!("report: {}", path.display());
    Ok(())
}
