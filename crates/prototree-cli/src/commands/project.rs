//! `prototree project`: replace each prototype by a training patch (the nearest one by
//! default).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use prototree::interpret::{ProjectionRule, SPECIFIC_CANDIDATES, SPECIFIC_MIN_SIMILARITY};

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
    /// Which patch replaces a prototype: `nearest` (the reference) or `specific` (among
    /// the nearest patches of 20 images, the one that best separates the node's subtrees;
    /// docs/interpretability.md).
    #[arg(long, value_enum, default_value_t = ProjectionChoice::Nearest)]
    rule: ProjectionChoice,
    /// With `--rule specific`: nearest patches (of different images) considered.
    #[arg(long, default_value_t = SPECIFIC_CANDIDATES, value_name = "N")]
    candidates: usize,
    /// With `--rule specific`: least similarity to the prototype, as a share of the
    /// nearest patch's, in (0, 1].
    #[arg(long, default_value_t = SPECIFIC_MIN_SIMILARITY, value_name = "R")]
    min_similarity: f32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

/// The projection rule on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProjectionChoice {
    /// The nearest allowed training patch (the reference's projection).
    Nearest,
    /// Among the nearest patches of 20 images still at least half as similar, the one
    /// most specific to the node's present subtree.
    Specific,
}

impl From<ProjectionChoice> for ProjectionRule {
    fn from(c: ProjectionChoice) -> Self {
        match c {
            ProjectionChoice::Nearest => ProjectionRule::Nearest,
            ProjectionChoice::Specific => ProjectionRule::SPECIFIC,
        }
    }
}

/// Projects the prototypes, saves the model to `--out` and prints its accuracy.
pub fn run(a: ProjectArgs, obs: &mut CliProgress) -> Result<()> {
    let o = prototree::workflow::project_model_dir(
        &a.model,
        &a.data,
        output_dir(&a.out)?,
        &a.device.open()?,
        match a.rule {
            ProjectionChoice::Nearest => ProjectionRule::Nearest,
            ProjectionChoice::Specific => ProjectionRule::Specific {
                candidates: a.candidates,
                min_similarity_ratio: a.min_similarity,
            },
        },
        obs,
    )
    .with_context(|| format!("projecting {} onto {}", a.model.display(), a.data.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
        return Ok(());
    }
    println!(
        "projected {} prototypes (mean distance to their patch {:.4})",
        o.projected, o.mean_distance
    );
    println!("after projection: {}", o.after);
    println!("saved to {}", a.out.display());
    Ok(())
}
