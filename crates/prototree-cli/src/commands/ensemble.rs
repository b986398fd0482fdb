//! `prototree ensemble train|eval`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use prototree::ensemble::{evaluate_ensemble, train_ensemble};
use prototree::prelude::Interrupter;

use super::train::{train_run_config, train_run_dir, TrainArgs};
use super::DeviceArg;
use crate::progress::CliProgress;

/// `prototree ensemble`.
#[derive(Subcommand)]
pub enum EnsembleCommand {
    /// Train N trees that differ by seed into OUT/tree_1 … OUT/tree_N.
    Train(Box<EnsembleTrainArgs>),
    /// Evaluate each member and the ensemble (mean of their distributions).
    Eval(EnsembleEvalArgs),
}

/// `prototree ensemble train`.
#[derive(Args)]
pub struct EnsembleTrainArgs {
    /// Number of trees.
    #[arg(long, default_value_t = 5)]
    n: usize,
    #[command(flatten)]
    train: TrainArgs,
}

/// `prototree ensemble eval`.
#[derive(Args)]
pub struct EnsembleEvalArgs {
    /// Member model directories.
    #[arg(long, required = true, num_args = 1..)]
    models: Vec<PathBuf>,
    /// Data set whose test split is used.
    #[arg(long)]
    data: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

/// Runs `ensemble train` or `ensemble eval`.
pub fn run(cmd: EnsembleCommand, interrupter: &Interrupter, obs: &mut CliProgress) -> Result<()> {
    match cmd {
        EnsembleCommand::Train(a) => run_train(*a, interrupter, obs),
        EnsembleCommand::Eval(a) => run_eval(a, obs),
    }
}

fn run_train(a: EnsembleTrainArgs, interrupter: &Interrupter, obs: &mut CliProgress) -> Result<()> {
    if a.train.resume.is_some() || a.train.overrides.quick {
        bail!("ensemble train does not take --resume or --quick; resume members one by one with `prototree train --resume OUT/tree_I`");
    }
    if a.train.overrides.attempts.is_some_and(|n| n > 1) {
        bail!("ensemble members train once each (they are already several seeds): drop --attempts");
    }
    let cfg = train_run_config(&a.train)?;
    if a.train.out.is_none() {
        bail!("no output directory: give --out DIR");
    }
    let (out, mode) = train_run_dir(&a.train)?;
    let device = a.train.device.open()?;
    let dirs = train_ensemble(&cfg, a.n, &out, mode, &device, interrupter, obs)
        .with_context(|| format!("training an ensemble into {}", out.display()))?;
    println!("trained {} trees:", dirs.len());
    for d in &dirs {
        println!("  {}", d.display());
    }
    println!(
        "evaluate with: prototree ensemble eval --data {} --models {}",
        cfg.data.display(),
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

fn run_eval(a: EnsembleEvalArgs, obs: &mut CliProgress) -> Result<()> {
    let device = a.device.open()?;
    let r = evaluate_ensemble(&a.models, &a.data, &device, obs)
        .with_context(|| format!("evaluating the ensemble on {}", a.data.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    for m in &r.members {
        println!(
            "{}: soft {:.2}%  greedy {:.2}%  ({} prototypes)",
            m.model.display(),
            100.0 * m.eval.accuracy_soft,
            100.0 * m.eval.accuracy_greedy,
            m.num_prototypes
        );
    }
    println!(
        "ensemble of {}: {:.2}% (members' mean {:.2}%), {} prototypes in total, {} images",
        r.members.len(),
        100.0 * r.accuracy,
        100.0 * r.mean_member_accuracy,
        r.total_prototypes,
        r.num_images
    );
    Ok(())
}
