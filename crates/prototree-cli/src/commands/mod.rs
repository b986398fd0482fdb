//! The subcommands of `prototree`, one file each: its clap arguments and a `run` function
//! made of library calls and printing.

mod demo;
mod ensemble;
mod eval;
mod explain;
mod export;
mod import;
mod inspect;
mod predict;
mod project;
mod prune;
mod report;
mod synth;
mod train;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use prototree::candle_core::Device;
use prototree::candle_device;
use prototree::prelude::{load_model, Interrupter};
use prototree::tree::SavedModel;

use crate::progress::CliProgress;

#[derive(Subcommand)]
pub enum Command {
    /// The whole pipeline on synthetic birds: generate, train, prune, project, explain, report.
    Demo(demo::DemoArgs),
    /// Generate a synthetic fine-grained "birds" data set in CUB-200-2011 layout.
    Synth(synth::SynthArgs),
    /// Train a prototype tree on a CUB-layout data set.
    Train(Box<train::TrainArgs>),
    /// Evaluate a saved model on the test split of a data set.
    Eval(eval::EvalArgs),
    /// Prune near-uniform subtrees of a saved model.
    Prune(prune::PruneArgs),
    /// Replace each prototype by its nearest training patch.
    Project(project::ProjectArgs),
    /// Predict image files (class, probabilities, decision path).
    Predict(predict::PredictArgs),
    /// Import a checkpoint of the PyTorch reference implementation.
    Import(import::ImportArgs),
    /// Explain predictions: the path, prototypes, patches and heatmaps per image.
    Explain(explain::ExplainArgs),
    /// Export the decision tree as DOT, SVG or JSON.
    Export(export::ExportArgs),
    /// Write the HTML report of a model.
    Report(report::ReportArgs),
    /// Ensembles of trees: train members, evaluate them together.
    #[command(subcommand)]
    Ensemble(Box<ensemble::EnsembleCommand>),
    /// Describe a saved model.
    Inspect(inspect::InspectArgs),
}

impl Command {
    /// Whether the command trains, so that Ctrl-C should let it save first.
    pub fn trains(&self) -> bool {
        matches!(
            self,
            Command::Train(_) | Command::Ensemble(_) | Command::Demo(_)
        )
    }

    /// Runs the command.
    pub fn run(self, interrupter: &Interrupter, obs: &mut CliProgress) -> Result<()> {
        match self {
            Command::Demo(a) => demo::run(a, interrupter, obs),
            Command::Synth(a) => synth::run(a, obs),
            Command::Train(a) => train::run(*a, interrupter, obs),
            Command::Eval(a) => eval::run(a, obs),
            Command::Prune(a) => prune::run(a, obs),
            Command::Project(a) => project::run(a, obs),
            Command::Predict(a) => predict::run(a, obs),
            Command::Import(a) => import::run(a),
            Command::Explain(a) => explain::run(a, obs),
            Command::Export(a) => export::run(a),
            Command::Report(a) => report::run(a, obs),
            Command::Ensemble(c) => ensemble::run(*c, interrupter, obs),
            Command::Inspect(a) => inspect::run(a),
        }
    }
}

/// `out`, checked not to be a file: an output directory.
fn output_dir(out: &Path) -> Result<&Path> {
    if out.is_file() {
        bail!(
            "{}: exists and is a file, expected a directory",
            out.display()
        );
    }
    Ok(out)
}

/// Fails on the first of `images` that is not a file.
fn check_image_files(images: &[PathBuf]) -> Result<()> {
    for image in images {
        if !image.is_file() {
            bail!("{}: no such image file", image.display());
        }
    }
    Ok(())
}

/// A decision path as `node+` (prototype present) and `node-` (absent), space-separated.
fn path_text<N: std::fmt::Display>(steps: impl IntoIterator<Item = (N, bool)>) -> String {
    steps
        .into_iter()
        .map(|(node, present)| format!("{node}{}", if present { "+" } else { "-" }))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `--device` flag of the commands that compute.
#[derive(Args)]
pub struct DeviceArg {
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl DeviceArg {
    /// The candle device named by the flag.
    fn open(&self) -> Result<Device> {
        Ok(candle_device(&self.device)?)
    }

    /// The saved model in `dir`, loaded onto the device.
    fn load_model(&self, dir: &Path) -> Result<SavedModel> {
        let device = self.open()?;
        load_model(dir, &device).with_context(|| format!("loading {}", dir.display()))
    }
}
