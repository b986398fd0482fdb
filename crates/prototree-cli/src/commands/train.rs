//! `prototree train`: train (or resume) a prototype tree.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use prototree::prelude::*;

use super::DeviceArg;
use crate::overrides::RunOverrides;
use crate::progress::CliProgress;

/// `prototree train` (also the member flags of `prototree ensemble train`).
#[derive(Args)]
pub struct TrainArgs {
    /// Run configuration (TOML); flags below override its values.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in RUN from its last checkpoint (RUN/run.toml; flags below, e.g. a
    /// longer --epochs, override it).
    #[arg(long, value_name = "RUN", conflicts_with_all = ["config", "out"])]
    pub(super) resume: Option<PathBuf>,
    /// Output run directory.
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
    #[command(flatten)]
    pub(super) overrides: RunOverrides,
    /// Replace an existing run in --out.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    pub(super) device: DeviceArg,
}

/// The run configuration of `prototree train`: the recipe's preset (or RUN/run.toml when
/// resuming), the --config file over it, then the flags on top.
pub(super) fn train_run_config(a: &TrainArgs) -> Result<RunConfig> {
    let mut c = match (&a.resume, &a.config) {
        (Some(run), _) => {
            if a.overrides.recipe.is_some() {
                bail!("--recipe cannot be combined with --resume (the run keeps its recipe)");
            }
            let path = run.join(prototree::run_config::RUN_CONFIG_FILE);
            RunConfig::from_file(&path)
                .with_context(|| format!("{} is not a resumable run", run.display()))?
        }
        (None, file) => {
            // The file's own `recipe` and `weights`, if it names them, choose the preset.
            let probe = file.as_deref().map(RunConfig::from_file).transpose()?;
            let pretrained = a.overrides.weights.is_some()
                || probe.as_ref().is_some_and(|p| p.weights.is_some());
            let recipe = a
                .overrides
                .recipe
                .or(probe.and_then(|p| p.recipe))
                .unwrap_or_else(|| Recipe::for_weights(pretrained));
            let preset = recipe.preset();
            let mut c = match file {
                Some(path) => RunConfig::from_file_over(path, &preset)?,
                None => preset,
            };
            c.recipe = Some(recipe);
            c
        }
    };
    a.overrides.apply(&mut c);
    if c.data.as_os_str().is_empty() {
        bail!("no data set: give --data DIR or `data = \"DIR\"` in the --config file");
    }
    let source = match (&a.resume, &a.config) {
        (Some(run), _) => format!("{} with the flags", run.join("run.toml").display()),
        (None, Some(file)) => format!("{} with the flags", file.display()),
        (None, None) => "the flags".to_string(),
    };
    c.check(std::path::Path::new(&source))?;
    Ok(c)
}

/// The run directory of `prototree train` and how to open it.
pub(super) fn train_run_dir(a: &TrainArgs) -> Result<(PathBuf, RunMode)> {
    Ok(match (&a.resume, &a.out) {
        (Some(run), _) => (run.clone(), RunMode::Resume),
        (None, Some(out)) if a.overwrite => (out.clone(), RunMode::Overwrite),
        (None, Some(out)) => (out.clone(), RunMode::New),
        (None, None) => bail!("no output directory: give --out RUN"),
    })
}

/// Trains (or resumes) the run and prints its test accuracy.
pub fn run(a: TrainArgs, interrupter: &Interrupter, obs: &mut CliProgress) -> Result<()> {
    let device = a.device.open()?;
    if a.resume.is_some() && a.overrides.quick {
        bail!("--quick cannot be combined with --resume");
    }
    let cfg = train_run_config(&a)?;
    let (out, mode) = train_run_dir(&a)?;
    let outcome = match train(&cfg, &out, mode, &device, interrupter, obs) {
        Ok(o) => o,
        Err(prototree::Error::Learn(prototree::learn::Error::Interrupted))
            if !prototree::learn::checkpoint_exists(&prototree::learn::last_checkpoint_dir(
                &out,
            )) && !prototree::attempts::holds_attempts(&out) =>
        {
            bail!(
                "interrupted before the first checkpoint (during the backbone warm-up or the first epoch's first batch): nothing to resume; start again with `prototree train ... --out {} --overwrite`",
                out.display()
            )
        }
        Err(prototree::Error::Learn(prototree::learn::Error::Interrupted)) => {
            bail!(
                "interrupted; the training so far is saved (up to the last finished batch): continue with `prototree train --resume {}`",
                out.display()
            )
        }
        Err(e @ prototree::Error::Learn(prototree::learn::Error::RunExists(_))) => {
            return Err(e.into())
        }
        Err(e) => return Err(e).context("training failed"),
    };
    let t = &outcome.test;
    println!(
        "test accuracy: soft {:.1}%  greedy {:.1}%  max-leaf {:.1}%  (fidelity greedy {:.1}%)",
        100.0 * t.accuracy_soft,
        100.0 * t.accuracy_greedy,
        100.0 * t.accuracy_max_leaf,
        100.0 * t.fidelity_greedy
    );
    // A quick run, or data with nothing to hold out, trains one attempt even when asked
    // for several: the run directory says which it was.
    if out.join(prototree::attempts::ATTEMPTS_FILE).is_file() {
        println!(
            "model saved to {} (run.toml, attempts.json, metrics.jsonl and curves.png of the kept attempt; each attempt in attempts/)",
            out.display()
        );
    } else {
        println!(
            "model saved to {} (run.toml, metrics.jsonl, curves.png, checkpoints/)",
            out.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        train: TrainArgs,
    }

    fn config(args: &[&str]) -> Result<RunConfig> {
        let cli = Cli::try_parse_from(std::iter::once("train").chain(args.iter().copied()))?;
        train_run_config(&cli.train)
    }

    #[test]
    fn the_recipe_follows_the_weights_the_flag_and_the_file() -> Result<()> {
        let scratch = config(&["--data", "d", "--out", "o"])?;
        assert_eq!(scratch.recipe, Some(Recipe::Scratch));
        assert_eq!(scratch.schedule, Recipe::Scratch.preset().schedule);
        let pretrained = config(&["--data", "d", "--out", "o", "--weights", "w.pth"])?;
        assert_eq!(pretrained.recipe, Some(Recipe::Reference));
        assert_eq!(pretrained.schedule.lr_net, 1e-5);
        assert_eq!(pretrained.schedule.freeze_epochs, 2);
        let chosen = config(&["--data", "d", "--out", "o", "--recipe", "reference"])?;
        assert_eq!(chosen.schedule, Recipe::Reference.preset().schedule);
        // Flags override the preset.
        let flagged = config(&["--data", "d", "--out", "o", "--lr-net", "0.5"])?;
        assert_eq!(flagged.schedule.lr_net, 0.5);
        assert_eq!(flagged.schedule.lr, 4e-3);
        // A file overrides only the settings it names.
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("run.toml");
        std::fs::write(&file, "data = \"d\"\n[schedule]\nepochs = 7\n")?;
        let f = file.display().to_string();
        let from_file = config(&["--config", &f, "--out", "o"])?;
        assert_eq!(from_file.schedule.epochs, 7);
        assert_eq!(from_file.schedule.lr_net, 4e-3);
        assert_eq!(from_file.depth, Recipe::Scratch.preset().depth);
        std::fs::write(&file, "data = \"d\"\nrecipe = \"reference\"\n")?;
        assert_eq!(
            config(&["--config", &f, "--out", "o"])?.schedule.lr_net,
            1e-5
        );
        let err = config(&["--data", "d", "--out", "o", "--recipe", "fast"]);
        assert!(err.is_err());
        Ok(())
    }

    #[test]
    fn scratch_runs_choose_among_attempts_unless_told_otherwise() -> Result<()> {
        let scratch = config(&["--data", "d", "--out", "o"])?;
        assert_eq!(
            (
                scratch.attempts,
                scratch.stop_at_validation,
                scratch.min_attempt_gain
            ),
            (3, Some(0.97), Some(0.02))
        );
        let summary = scratch.recipe_summary();
        let stops = "(stopping at 97.0%, or once an attempt gains less than 2.0 points)";
        assert!(summary.contains(stops), "{summary}");
        let pretrained = config(&["--data", "d", "--out", "o", "--weights", "w.pth"])?;
        assert_eq!(pretrained.attempts, 1);
        let once = config(&["--data", "d", "--out", "o", "--attempts", "1"])?;
        assert_eq!(once.attempts, 1);
        let flags = [
            "--data",
            "d",
            "--out",
            "o",
            "--stop-at-validation",
            "0.5",
            "--min-attempt-gain",
            "0.1",
        ];
        let tuned = config(&flags)?;
        assert_eq!(
            (tuned.stop_at_validation, tuned.min_attempt_gain),
            (Some(0.5), Some(0.1))
        );
        // A quick check trains one attempt; a gain outside [0, 1] is refused, named.
        let quick = config(&["--data", "d", "--out", "o", "--quick"])?;
        assert_eq!(quick.effective().attempts, 1);
        let bad = config(&["--data", "d", "--out", "o", "--min-attempt-gain", "2"]);
        let msg = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("min_attempt_gain"), "{msg}");
        Ok(())
    }

    #[test]
    fn the_protocol_and_the_last_block_grouping_are_flags() -> Result<()> {
        use prototree::data::Protocol;
        let unset = config(&["--data", "d", "--out", "o"])?.schedule;
        assert_eq!(unset.last_block_with_addon, None);
        let set = config(&[
            "--data",
            "d",
            "--out",
            "o",
            "--protocol",
            "plain",
            "--last-block-with-addon",
        ])?
        .schedule;
        assert_eq!(set.protocol, Some(Protocol::Plain));
        assert_eq!(set.last_block_with_addon, Some(true));
        let off = config(&["--data", "d", "--out", "o", "--last-block-with-addon=false"])?;
        assert_eq!(off.schedule.last_block_with_addon, Some(false));
        let bad = config(&["--data", "d", "--out", "o", "--protocol", "cub"]);
        let msg = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("expected reference or plain"), "{msg}");
        Ok(())
    }
}
