//! `prototree`: neural prototype trees from the command line.

mod explain_cmds;
mod progress;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use prototree::backbone::BackboneKind;
use prototree::candle_device;
use prototree::data::{Augmentation, SynthConfig};
use prototree::prelude::*;
use prototree::tree::io::load_meta;

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
    Train(TrainArgs),
    /// Evaluate a saved model on the test split of a data set.
    Eval(EvalArgs),
    /// Prune near-uniform subtrees of a saved model.
    Prune(PruneArgs),
    /// Replace each prototype by its nearest training patch.
    Project(ProjectArgs),
    /// Explain predictions: the path, prototypes, patches and heatmaps per image.
    Explain(explain_cmds::ExplainArgs),
    /// Export the decision tree as DOT, SVG or JSON.
    Export(explain_cmds::ExportArgs),
    /// Write the HTML report of a model.
    Report(explain_cmds::ReportArgs),
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
    /// Training epochs.
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
struct TrainArgs {
    /// Data set directory in CUB-200-2011 layout.
    #[arg(long)]
    data: PathBuf,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    /// Backbone.
    #[arg(long, default_value = "small-cnn")]
    backbone: BackboneKind,
    /// Tree depth.
    #[arg(long, default_value_t = 9)]
    depth: usize,
    /// Prototype length (add-on channels).
    #[arg(long, default_value_t = 256)]
    proto_dim: usize,
    /// Input side in pixels.
    #[arg(long, default_value_t = 224)]
    image_size: u32,
    /// Epochs.
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Prototype learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Add-on / last-block learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr_block: f64,
    /// Backbone learning rate.
    #[arg(long, default_value_t = 1e-5)]
    lr_net: f64,
    /// Epochs with the backbone frozen.
    #[arg(long, default_value_t = 2)]
    freeze_epochs: usize,
    /// Comma-separated epochs after which learning rates decay by --gamma.
    #[arg(long, value_delimiter = ',')]
    milestones: Vec<usize>,
    /// Learning-rate decay at milestones.
    #[arg(long, default_value_t = 0.5)]
    gamma: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Augmentation: none, flip or reference.
    #[arg(long, default_value = "reference")]
    augment: String,
    /// Crop images to their bounding boxes.
    #[arg(long)]
    crop_bbox: bool,
    /// Evaluate on the test split every N epochs (0: only at the end).
    #[arg(long, default_value_t = 0)]
    eval_every: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
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

fn parse_augmentation(s: &str) -> Result<Augmentation> {
    Ok(match s {
        "none" => Augmentation::None,
        "flip" => Augmentation::Flip,
        "reference" => Augmentation::Reference,
        other => bail!("unknown augmentation `{other}` (expected none, flip or reference)"),
    })
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

fn run_demo_cmd(a: DemoArgs, obs: &mut CliProgress) -> Result<()> {
    check_output_dir(&a.out)?;
    let mut cfg = DemoConfig::new(a.out.clone());
    cfg.synth.classes = a.classes;
    cfg.synth.per_class = a.per_class;
    cfg.synth.seed = a.seed;
    cfg.depth = a.depth;
    cfg.train.seed = a.seed;
    if let Some(e) = a.epochs {
        cfg.train.epochs = e;
        cfg.train.milestones.retain(|m| *m < e);
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
    obs.stage_started(Stage::Synthesize, a.classes * a.per_class);
    let summary = prototree::data::generate(&cfg, &a.out, &mut |done, _| obs.stage_progress(done))
        .with_context(|| format!("generating synthetic birds into {}", a.out.display()))?;
    obs.stage_finished(Stage::Synthesize);
    println!("{summary}");
    Ok(())
}

fn run_train_cmd(a: TrainArgs, obs: &mut CliProgress) -> Result<()> {
    check_output_dir(&a.out)?;
    let job = TrainJob {
        data: a.data.clone(),
        out: a.out.clone(),
        tree: TreeConfig {
            backbone: a.backbone,
            depth: a.depth,
            proto_dim: a.proto_dim,
            num_classes: 2,
        },
        train: TrainConfig {
            epochs: a.epochs,
            batch_size: a.batch_size,
            lr: a.lr,
            lr_block: a.lr_block,
            lr_net: a.lr_net,
            weight_decay: a.weight_decay,
            freeze_epochs: a.freeze_epochs,
            milestones: a.milestones,
            gamma: a.gamma,
            seed: a.seed,
            ..TrainConfig::default()
        },
        image_size: a.image_size,
        augmentation: parse_augmentation(&a.augment)?,
        crop_to_bbox: a.crop_bbox,
        eval_every: a.eval_every,
        device: candle_device(&a.device)?,
    };
    let outcome = train(&job, obs).context("training failed")?;
    let t = &outcome.test;
    println!(
        "test accuracy: soft {:.1}%  greedy {:.1}%  max-leaf {:.1}%  (fidelity greedy {:.1}%)",
        100.0 * t.accuracy_soft,
        100.0 * t.accuracy_greedy,
        100.0 * t.accuracy_max_leaf,
        100.0 * t.fidelity_greedy
    );
    println!("model saved to {}", a.out.display());
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
    if a.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    let report = &d.report;
    println!("images:            {}", report.num_images);
    println!("accuracy soft:     {:.2}%", 100.0 * report.accuracy_soft);
    println!("accuracy greedy:   {:.2}%", 100.0 * report.accuracy_greedy);
    println!("accuracy max-leaf: {:.2}%", 100.0 * report.accuracy_max_leaf);
    println!("fidelity greedy:   {:.2}%", 100.0 * report.fidelity_greedy);
    println!("fidelity max-leaf: {:.2}%", 100.0 * report.fidelity_max_leaf);
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
    let o = prototree::interpret::prune_model_dir(
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
    let o = prototree::interpret::project_model_dir(&a.model, &a.data, &a.out, &device, obs)
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
    let meta = load_meta(&a.model).with_context(|| format!("reading {}", a.model.display()))?;
    let saved = load_model(&a.model, &candle_core_device_cpu())
        .with_context(|| format!("loading {}", a.model.display()))?;
    let topo = saved.model.topology();
    if a.json {
        let v = serde_json::json!({
            "config": meta,
            "num_decisions": topo.num_decisions(),
            "num_live_leaves": topo.num_live_leaves(),
            "num_projected": saved.projections.len(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("model:       {}", a.model.display());
        println!("stage:       {}", meta.stage);
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
        println!("projected:   {} prototypes", saved.projections.len());
    }
    Ok(())
}

fn candle_core_device_cpu() -> prototree::candle_core::Device {
    prototree::candle_core::Device::Cpu
}

fn main() {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        // Read by candle's and rayon's thread pools when they first start.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut obs = CliProgress::new(cli.quiet, interrupted.clone());
    let result = match cli.command {
        Command::Demo(a) => run_demo_cmd(a, &mut obs),
        Command::Synth(a) => run_synth_cmd(a, &mut obs),
        Command::Train(a) => run_train_cmd(a, &mut obs),
        Command::Eval(a) => run_eval_cmd(a, &mut obs),
        Command::Prune(a) => run_prune_cmd(a, &mut obs),
        Command::Project(a) => run_project_cmd(a, &mut obs),
        Command::Explain(a) => explain_cmds::run_explain(a, &mut obs),
        Command::Export(a) => explain_cmds::run_export(a),
        Command::Report(a) => explain_cmds::run_report(a, &mut obs),
        Command::Inspect(a) => run_inspect_cmd(a),
    };
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("interrupted");
    }
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
