//! `prototree`: neural prototype trees from the command line.

mod ensemble_cmd;
mod explain_cmds;
mod model_cmds;
mod overrides;
mod progress;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use prototree::candle_device;
use prototree::data::SynthConfig;
use prototree::prelude::*;

use crate::overrides::RunOverrides;
use crate::progress::CliProgress;

/// Tensor buffers are large and short-lived: mimalloc reuses them instead of mapping
/// fresh pages for each (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "prototree",
    version,
    about = "Interpretable image classification with neural prototype trees"
)]
struct Cli {
    /// Threads for CPU computation (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole pipeline on synthetic birds: generate, train, prune, project, explain, report.
    Demo(DemoArgs),
    /// Generate a synthetic fine-grained "birds" data set in CUB-200-2011 layout.
    Synth(SynthArgs),
    /// Train a prototype tree on a CUB-layout data set.
    Train(Box<TrainArgs>),
    /// Evaluate a saved model on the test split of a data set.
    Eval(EvalArgs),
    /// Prune near-uniform subtrees of a saved model.
    Prune(PruneArgs),
    /// Replace each prototype by its nearest training patch.
    Project(ProjectArgs),
    /// Predict image files (class, probabilities, decision path).
    Predict(model_cmds::PredictArgs),
    /// Import a checkpoint of the PyTorch reference implementation.
    Import(model_cmds::ImportArgs),
    /// Explain predictions: the path, prototypes, patches and heatmaps per image.
    Explain(explain_cmds::ExplainArgs),
    /// Export the decision tree as DOT, SVG or JSON.
    Export(explain_cmds::ExportArgs),
    /// Write the HTML report of a model.
    Report(explain_cmds::ReportArgs),
    /// Ensembles of trees: train members, evaluate them together.
    #[command(subcommand)]
    Ensemble(Box<ensemble_cmd::EnsembleCommand>),
    /// Describe a saved model.
    Inspect(InspectArgs),
}

#[derive(Args)]
struct PruneArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Leaves whose top class probability is at most tau are near-uniform.
    #[arg(long, default_value_t = 0.01)]
    tau: f32,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    /// Data set whose test split measures the accuracy change (optional).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct ProjectArgs {
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
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct DemoArgs {
    /// Output directory (data/, model/, summary.json).
    #[arg(long)]
    out: PathBuf,
    /// Number of classes.
    #[arg(long, default_value_t = 12)]
    classes: usize,
    /// Images per class.
    #[arg(long, default_value_t = 80)]
    per_class: usize,
    /// Training epochs (default 40; the learning-rate milestones move in proportion).
    #[arg(long)]
    epochs: Option<usize>,
    /// Tree depth.
    #[arg(long, default_value_t = 5)]
    depth: usize,
    /// Seed of data generation and training.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct SynthArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Number of classes.
    #[arg(long, default_value_t = 12)]
    classes: usize,
    /// Images per class.
    #[arg(long, default_value_t = 80)]
    per_class: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Share of images in the training split.
    #[arg(long, default_value_t = 0.7)]
    train_fraction: f32,
}

#[derive(Args)]
pub(crate) struct TrainArgs {
    /// Run configuration (TOML); flags below override its values.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in RUN from its last checkpoint (RUN/run.toml; flags below, e.g. a
    /// longer --epochs, override it).
    #[arg(long, value_name = "RUN", conflicts_with_all = ["config", "out"])]
    resume: Option<PathBuf>,
    /// Output run directory.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    overrides: RunOverrides,
    /// Replace an existing run in --out.
    #[arg(long)]
    overwrite: bool,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct EvalArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Data set directory, CUB-200-2011 or ImageFolder layout (its test split is used).
    #[arg(long)]
    data: PathBuf,
    /// Routing mode of the per-class accuracy and confusion matrix: soft, greedy or max-leaf.
    #[arg(long, default_value = "soft")]
    routing: prototree::tree::Routing,
    /// Write the confusion matrix as CSV to this file.
    #[arg(long)]
    confusion: Option<PathBuf>,
    /// Also measure explanation quality (needs part annotations: CUB part_locs.txt or the
    /// synthetic birds' masks).
    #[arg(long)]
    explanations: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args)]
struct InspectArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

fn check_output_dir(out: &Path) -> Result<()> {
    if out.is_file() {
        bail!(
            "{}: exists and is a file, expected a directory",
            out.display()
        );
    }
    Ok(())
}

fn run_demo_cmd(a: DemoArgs, interrupter: &Interrupter, obs: &mut CliProgress) -> Result<()> {
    check_output_dir(&a.out)?;
    let mut cfg = DemoConfig::new(a.out.clone());
    cfg.synth.classes = a.classes;
    cfg.synth.per_class = a.per_class;
    cfg.synth.seed = a.seed;
    cfg.run.depth = a.depth;
    cfg.run.schedule.seed = a.seed;
    cfg.interrupter = interrupter.clone();
    if let Some(e) = a.epochs {
        cfg.set_epochs(e);
    }
    cfg.device = candle_device(&a.device)?;
    let s = run_demo(&cfg, obs).context("demo failed")?;
    println!(
        "demo finished in {:.0} s ({:.0} s training)",
        s.seconds, s.train_seconds
    );
    println!(
        "  test accuracy: soft {:.1}%  greedy {:.1}%  max-leaf {:.1}%",
        100.0 * s.accuracy_soft,
        100.0 * s.accuracy_greedy,
        100.0 * s.accuracy_max_leaf
    );
    println!(
        "  fidelity: greedy {:.1}%  max-leaf {:.1}%   mean path {:.1} decisions",
        100.0 * s.fidelity_greedy,
        100.0 * s.fidelity_max_leaf,
        s.mean_path_length
    );
    println!(
        "  {} prototypes, {} classes",
        s.num_prototypes, s.num_classes
    );
    println!(
        "after pruning (tau {:.3}: {} -> {} prototypes) and projection:",
        s.tau, s.num_prototypes, s.num_prototypes_pruned
    );
    println!(
        "  test accuracy: soft {:.1}%  greedy {:.1}%  max-leaf {:.1}%",
        100.0 * s.accuracy_soft_pruned,
        100.0 * s.accuracy_greedy_pruned,
        100.0 * s.accuracy_max_leaf_pruned
    );
    println!(
        "  fidelity: greedy {:.1}%  max-leaf {:.1}%   mean path {:.1} decisions",
        100.0 * s.fidelity_greedy_pruned,
        100.0 * s.fidelity_max_leaf_pruned,
        s.mean_path_length_pruned
    );
    println!("  model:   {}", s.model_dir.display());
    println!("  pruned:  {}", s.pruned_model_dir.display());
    println!("  summary: {}", a.out.join("summary.json").display());
    println!("report:    {}", s.report.display());
    Ok(())
}

fn run_synth_cmd(a: SynthArgs, obs: &mut CliProgress) -> Result<()> {
    check_output_dir(&a.out)?;
    let cfg = SynthConfig {
        classes: a.classes,
        per_class: a.per_class,
        size: a.size,
        seed: a.seed,
        train_fraction: a.train_fraction,
    };
    cfg.check()?;
    let obs: &mut dyn Observer = obs;
    obs.stage_started(Stage::Synthesize, a.classes * a.per_class);
    let summary = prototree::data::generate(&cfg, &a.out, &mut |done, _| obs.stage_progress(done))
        .with_context(|| format!("generating synthetic birds into {}", a.out.display()))?;
    obs.stage_finished(Stage::Synthesize);
    println!("{summary}");
    Ok(())
}

/// The run configuration of `prototree train`: the file (or RUN/run.toml when resuming),
/// then the flags on top.
pub(crate) fn train_run_config(a: &TrainArgs) -> Result<RunConfig> {
    let mut c = match (&a.resume, &a.config) {
        (Some(run), _) => {
            let path = run.join(prototree::run_config::RUN_CONFIG_FILE);
            RunConfig::from_file(&path)
                .with_context(|| format!("{} is not a resumable run", run.display()))?
        }
        (None, Some(path)) => RunConfig::from_file(path)?,
        (None, None) => RunConfig::default(),
    };
    a.overrides.apply(&mut c);
    if c.data.as_os_str().is_empty() {
        bail!("no data set: give --data DIR or `data = \"DIR\"` in the --config file");
    }
    Ok(c)
}

/// The run directory of `prototree train` and how to open it.
pub(crate) fn train_run_dir(a: &TrainArgs) -> Result<(PathBuf, RunMode)> {
    Ok(match (&a.resume, &a.out) {
        (Some(run), _) => (run.clone(), RunMode::Resume),
        (None, Some(out)) if a.overwrite => (out.clone(), RunMode::Overwrite),
        (None, Some(out)) => (out.clone(), RunMode::New),
        (None, None) => bail!("no output directory: give --out RUN"),
    })
}

fn run_train_cmd(a: TrainArgs, interrupter: &Interrupter, obs: &mut CliProgress) -> Result<()> {
    let device = candle_device(&a.device)?;
    if a.resume.is_some() && a.overrides.quick {
        bail!("--quick cannot be combined with --resume");
    }
    let cfg = train_run_config(&a)?;
    let (out, mode) = train_run_dir(&a)?;
    let outcome = match train(&cfg, &out, mode, &device, interrupter, obs) {
        Ok(o) => o,
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
    println!(
        "model saved to {} (run.toml, metrics.jsonl, curves.png, checkpoints/)",
        out.display()
    );
    Ok(())
}

fn run_eval_cmd(a: EvalArgs, obs: &mut CliProgress) -> Result<()> {
    let device = candle_device(&a.device)?;
    let d = prototree::eval::evaluate_dir_detailed(
        &a.model,
        &a.data,
        a.routing,
        a.batch_size,
        &device,
        obs,
    )
    .with_context(|| format!("evaluating {} on {}", a.model.display(), a.data.display()))?;
    if let Some(path) = &a.confusion {
        prototree::tree::io::write_atomic(path, d.confusion_csv().as_bytes())
            .with_context(|| format!("writing the confusion matrix to {}", path.display()))?;
    }
    let metrics = if a.explanations {
        Some(
            prototree::explanation_metrics::explanation_metrics_dir(
                &a.model, &a.data, &device, obs,
            )
            .with_context(|| format!("measuring the explanations of {}", a.model.display()))?,
        )
    } else {
        None
    };
    if a.json {
        let mut v = serde_json::to_value(&d)?;
        if let (Some(m), Some(obj)) = (&metrics, v.as_object_mut()) {
            obj.insert("explanations".into(), serde_json::to_value(m)?);
            for (k, x) in m.headline() {
                obj.insert(k.into(), x.into());
            }
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let report = &d.report;
    println!("images:            {}", report.num_images);
    println!("accuracy soft:     {:.2}%", 100.0 * report.accuracy_soft);
    println!("accuracy greedy:   {:.2}%", 100.0 * report.accuracy_greedy);
    println!(
        "accuracy max-leaf: {:.2}%",
        100.0 * report.accuracy_max_leaf
    );
    println!("fidelity greedy:   {:.2}%", 100.0 * report.fidelity_greedy);
    println!(
        "fidelity max-leaf: {:.2}%",
        100.0 * report.fidelity_max_leaf
    );
    println!("mean path length:  {:.2}", report.mean_path_length);
    println!("mean NLL:          {:.4}", report.loss);
    println!("per-class accuracy ({:?} routing):", d.routing);
    let width = d.per_class.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &d.per_class {
        println!(
            "  {:width$}  {:6.2}%  ({} images)",
            c.name,
            100.0 * c.accuracy,
            c.images
        );
    }
    if let Some(path) = &a.confusion {
        println!("confusion matrix: {}", path.display());
    }
    if let Some(m) = &metrics {
        println!("explanation quality:");
        for (k, v) in m.report_rows() {
            println!("  {k}: {v}");
        }
    }
    Ok(())
}

fn print_eval_line(label: &str, r: &prototree::tree::EvalReport) {
    println!(
        "{label}: soft {:.2}%  greedy {:.2}%  max-leaf {:.2}%  fidelity greedy {:.2}%  mean path {:.2}",
        100.0 * r.accuracy_soft,
        100.0 * r.accuracy_greedy,
        100.0 * r.accuracy_max_leaf,
        100.0 * r.fidelity_greedy,
        r.mean_path_length
    );
}

fn run_prune_cmd(a: PruneArgs, obs: &mut CliProgress) -> Result<()> {
    check_output_dir(&a.out)?;
    let device = candle_device(&a.device)?;
    let o = prototree::workflow::prune_model_dir(
        &a.model,
        a.tau,
        &a.out,
        a.data.as_deref(),
        &device,
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
    if let (Some(b), Some(after)) = (&o.before, &o.after) {
        print_eval_line("before", b);
        print_eval_line("after ", after);
        println!(
            "soft accuracy change: {:+.2} points",
            100.0 * (after.accuracy_soft - b.accuracy_soft)
        );
    }
    println!("saved to {}", a.out.display());
    Ok(())
}

fn run_project_cmd(a: ProjectArgs, obs: &mut CliProgress) -> Result<()> {
    check_output_dir(&a.out)?;
    let device = candle_device(&a.device)?;
    let o = prototree::workflow::project_model_dir(&a.model, &a.data, &a.out, &device, obs)
        .with_context(|| format!("projecting {} onto {}", a.model.display(), a.data.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&o)?);
        return Ok(());
    }
    println!(
        "projected {} prototypes (mean distance to their nearest patch {:.4})",
        o.projected, o.mean_distance
    );
    print_eval_line("after projection", &o.after);
    println!("saved to {}", a.out.display());
    Ok(())
}

fn run_inspect_cmd(a: InspectArgs) -> Result<()> {
    let saved = load_model(&a.model, &candle_core_device_cpu())
        .with_context(|| format!("loading {}", a.model.display()))?;
    let (meta, topo) = (&saved.meta, saved.model.topology());
    if a.json {
        // `config` as in config.json, stage included.
        let mut config = serde_json::to_value(meta)?;
        if let Some(map) = config.as_object_mut() {
            map.insert("stage".into(), saved.stage().name().into());
        }
        let v = serde_json::json!({
            "config": config,
            "num_decisions": topo.num_decisions(),
            "num_live_leaves": topo.num_live_leaves(),
            "num_projected": saved.projections().len(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("model:       {}", a.model.display());
        println!("stage:       {}", saved.stage());
        println!("backbone:    {}", meta.tree.backbone);
        println!(
            "depth:       {} ({} prototypes in use, {} leaves reachable)",
            meta.tree.depth,
            topo.num_decisions(),
            topo.num_live_leaves()
        );
        println!("proto dim:   {}", meta.tree.proto_dim);
        println!("classes:     {}", meta.class_names.len());
        println!(
            "input:       {} px, mean {:?}, std {:?}",
            meta.preprocessing.image_size, meta.preprocessing.mean, meta.preprocessing.std
        );
        println!("projected:   {} prototypes", saved.projections().len());
    }
    Ok(())
}

fn candle_core_device_cpu() -> prototree::candle_core::Device {
    prototree::candle_core::Device::Cpu
}

/// Ctrl-C (or SIGTERM) during training: the first one lets the current step finish and
/// the run save itself (training polls `interrupter` between batches); a second one quits
/// at once.
fn stop_training_on_interrupt(interrupter: Interrupter) {
    let installed = ctrlc::set_handler(move || {
        if interrupter.is_stopped() {
            eprintln!("\ninterrupted again: quitting now (the last saved checkpoint is intact)");
            std::process::exit(130);
        }
        interrupter.stop();
        eprintln!("\ninterrupt: finishing the current step and saving (Ctrl-C again to quit now)");
    });
    if let Err(e) = installed {
        eprintln!("warning: Ctrl-C will stop training at once, without saving: {e}");
    }
}

fn main() {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        // Read by candle's and rayon's thread pools when they first start.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if prototree::ops::generic_ops_forced() {
        // Said even with --quiet: the environment changed what runs.
        eprintln!(
            "note: {} is set: every op takes its generic (device-independent) path",
            prototree::ops::GENERIC_OPS_ENV
        );
    }
    let interrupter = Interrupter::new();
    if matches!(
        cli.command,
        Command::Train(_) | Command::Ensemble(_) | Command::Demo(_)
    ) {
        stop_training_on_interrupt(interrupter.clone());
    }
    let mut obs = CliProgress::new(cli.quiet);
    let result = match cli.command {
        Command::Demo(a) => run_demo_cmd(a, &interrupter, &mut obs),
        Command::Synth(a) => run_synth_cmd(a, &mut obs),
        Command::Train(a) => run_train_cmd(*a, &interrupter, &mut obs),
        Command::Eval(a) => run_eval_cmd(a, &mut obs),
        Command::Prune(a) => run_prune_cmd(a, &mut obs),
        Command::Project(a) => run_project_cmd(a, &mut obs),
        Command::Predict(a) => model_cmds::run_predict(a, &mut obs),
        Command::Import(a) => model_cmds::run_import(a),
        Command::Explain(a) => explain_cmds::run_explain(a, &mut obs),
        Command::Export(a) => explain_cmds::run_export(a),
        Command::Report(a) => explain_cmds::run_report(a, &mut obs),
        Command::Ensemble(c) => ensemble_cmd::run(*c, &interrupter, &mut obs),
        Command::Inspect(a) => run_inspect_cmd(a),
    };
    if interrupter.is_stopped() {
        eprintln!("interrupted");
    }
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
