//! `prototree prune`: prune near-uniform subtrees of a saved model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::{output_dir, DeviceArg};
use crate::progress::CliProgress;

/// `prototree prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Leaves whose top class probability is at most tau are near-uniform.
    #[arg(long, default_value_t = 0.01)]
    tau: f32,
    /// Then merge decisions whose leaves all predict one class (they decide nothing;
    /// greedy predictions are unchanged; off by default, as the reference).
    #[arg(long)]
    merge_same_class: bool,
    /// Then collapse decisions every training image of --data answers alike (they route
    /// no image to their other subtree; docs/interpretability.md; needs --data).
    #[arg(long, requires = "data")]
    collapse_constant: bool,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    /// Data set whose test split measures the accuracy change (optional).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

/// Prunes the model into `--out`; with `--data`, prints the accuracy before and after.
pub fn run(a: PruneArgs, obs: &mut CliProgress) -> Result<()> {
    use prototree::limits::check::{finite_in, Bounds};
    finite_in("", "--tau", f64::from(a.tau), 0.0, 1.0, Bounds::Closed)?;
    let o = prototree::workflow::prune_model_dir(
        &a.model,
        a.tau,
        prototree::workflow::PruneSteps {
            merge_same_class: a.merge_same_class,
            collapse_constant: a.collapse_constant,
        },
        output_dir(&a.out)?,
        a.data.as_deref(),
        &a.device.open()?,
        obs,
    )
    .with_context(|| format!("pruning {}", a.model.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
        return Ok(());
    }
    let r = &o.report;
    println!(
        "pruned with tau {}: prototypes {} -> {}, leaves {} -> {}",
        r.tau, r.decisions_before, r.decisions_after, r.leaves_before, r.leaves_after
    );
    if !r.merged_decisions.is_empty() {
        println!(
            "merged {} decisions whose leaves all predict one class",
            r.merged_decisions.len()
        );
    }
    if !r.collapsed_decisions.is_empty() {
        println!(
            "collapsed {} decisions every training image answers alike",
            r.collapsed_decisions.len()
        );
    }
    if let (Some(before), Some(after)) = (&o.before, &o.after) {
        println!("before: {before}");
        println!("after : {after}");
        println!(
            "soft accuracy change: {:+.2} points",
            100.0 * (after.accuracy_soft - before.accuracy_soft)
        );
    }
    println!("saved to {}", a.out.display());
    Ok(())
}
