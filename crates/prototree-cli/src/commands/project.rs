//! `prototree project`: replace each prototype by its nearest training patch.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::{output_dir, DeviceArg};
use crate::progress::CliProgress;

/// `prototree project`.
#[derive(Args)]
pub struct ProjectArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Data set in CUB layout: prototypes are projected onto its training split.
    #[arg(long)]
    data: PathBuf,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

/// Projects the prototypes, saves the model to `--out` and prints its accuracy.
pub fn run(a: ProjectArgs, obs: &mut CliProgress) -> Result<()> {
    let o = prototree::workflow::project_model_dir(
        &a.model,
        &a.data,
        output_dir(&a.out)?,
        &a.device.open()?,
        obs,
    )
    .with_context(|| format!("projecting {} onto {}", a.model.display(), a.data.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
        return Ok(());
    }
    println!(
        "projected {} prototypes (mean distance to their nearest patch {:.4})",
        o.projected, o.mean_distance
    );
    println!("after projection: {}", o.after);
    println!("saved to {}", a.out.display());
    Ok(())
}
