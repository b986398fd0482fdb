//! `prototree demo`: the whole pipeline on synthetic birds.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use prototree::prelude::*;

use super::project::ProjectionChoice;
use super::synth::BirdCounts;
use super::{output_dir, DeviceArg};
use crate::progress::CliProgress;

/// `prototree demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Output directory (data/, model/, summary.json).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    counts: BirdCounts,
    /// Training epochs (default 40; the learning-rate milestones move in proportion).
    #[arg(long)]
    epochs: Option<usize>,
    /// Tree depth.
    #[arg(long, default_value_t = 5)]
    depth: usize,
    /// Backbone (default: the demo's; `small-cnn` for stride 8, `small-cnn-s4` for 4,
    /// `small-cnn-local` for stride 8 with a 22-px receptive field).
    #[arg(long)]
    backbone: Option<BackboneKind>,
    /// Training augmentation: `flip` (default: mirror images and translations; the birds
    /// face either way), `shift` (translations only), `none` or `reference`.
    #[arg(long, value_parser = crate::overrides::parse_augmentation, value_name = "NAME")]
    augment: Option<prototree::data::Augmentation>,
    /// Side of the generated images in pixels (default 64).
    #[arg(long)]
    image_size: Option<u32>,
    /// Re-seed leaves of classes without one (default: on; docs/training.md).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    reseed_leaves: Option<bool>,
    /// Epochs of backbone warm-up with a linear classifier before the tree (default 0;
    /// the scratch recipe's 10 land more seeds but put fewer prototypes on parts:
    /// docs/explanations.md).
    #[arg(long, value_name = "N")]
    warmup_epochs: Option<usize>,
    /// Start the prototypes as latent patches of training images (default: off, as
    /// ProtoTree; docs/training.md).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    prototypes_from_patches: Option<bool>,
    /// Learning rate of every parameter group (default 2e-3; the scratch recipe's is 4e-3).
    #[arg(long, value_name = "LR")]
    lr: Option<f64>,
    /// Route repairs keep the other classes' routes (default: off in the demo, on in the
    /// scratch recipe; docs/training.md).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    repair_keeps_routes: Option<bool>,
    /// Weight of the flip-alignment term in training (default 0: ProtoTree's objective;
    /// docs/training.md).
    #[arg(long, value_name = "WEIGHT")]
    flip_alignment: Option<f64>,
    /// Gaussian noise of this standard deviation on the normalised training images
    /// (default 0: none; docs/training.md).
    #[arg(long, value_name = "SIGMA")]
    input_noise: Option<f64>,
    /// With --input-noise: the first epoch trained with it (default: from the start).
    #[arg(long, value_name = "EPOCH")]
    input_noise_from_epoch: Option<usize>,
    /// How prototypes are projected onto training patches (`prototree project --rule`;
    /// default `specific`, `nearest` is the reference's).
    #[arg(long, value_enum, default_value_t = ProjectionChoice::Specific)]
    projection: ProjectionChoice,
    /// Collapse decisions every training image answers alike after pruning (default:
    /// off; docs/interpretability.md).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    collapse_constant: Option<bool>,
    /// Train up to N attempts (seeds) on the training images less a validation split and
    /// keep the best (`prototree train --attempts`; default 1: the demo trains once).
    #[arg(long, value_name = "N")]
    attempts: Option<usize>,
    /// With --attempts: stop once an attempt raises the best validation accuracy by less
    /// than this (`prototree train --min-attempt-gain`; 0: only the accuracy bar stops).
    #[arg(long, value_name = "G")]
    min_attempt_gain: Option<f64>,
    /// Seed of data generation and training.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArg,
}

/// Generates the birds, trains, prunes, projects and reports; prints the summary.
pub fn run(a: DemoArgs, interrupter: &Interrupter, obs: &mut CliProgress) -> Result<()> {
    output_dir(&a.out)?;
    let mut cfg = DemoConfig::new(a.out.clone());
    cfg.synth.classes = a.counts.classes;
    cfg.synth.per_class = a.counts.per_class;
    cfg.synth.seed = a.seed;
    cfg.run.depth = a.depth;
    if let Some(b) = a.backbone {
        cfg.run.backbone = b;
    }
    if let Some(on) = a.reseed_leaves {
        cfg.run.schedule.reseed_leaves = on;
    }
    if let Some(aug) = a.augment {
        cfg.run.augmentation = aug;
    }
    if let Some(size) = a.image_size {
        cfg.synth.size = size;
    }
    cfg.run.schedule.seed = a.seed;
    cfg.interrupter = interrupter.clone();
    if let Some(e) = a.epochs {
        cfg.set_epochs(e);
    }
    if let Some(lr) = a.lr {
        let s = &mut cfg.run.schedule;
        (s.lr, s.lr_block, s.lr_net) = (lr, lr, lr);
    }
    if let Some(on) = a.repair_keeps_routes {
        cfg.run.schedule.repair_keeps_routes = on;
    }
    if let Some(w) = a.flip_alignment {
        cfg.run.schedule.flip_alignment = w;
    }
    if let Some(sigma) = a.input_noise {
        cfg.run.schedule.input_noise = sigma;
    }
    if let Some(epoch) = a.input_noise_from_epoch {
        cfg.run.schedule.input_noise_from_epoch = epoch;
    }
    if let Some(n) = a.warmup_epochs {
        cfg.run.schedule.backbone_warmup_epochs = n;
    }
    if let Some(on) = a.prototypes_from_patches {
        cfg.run.schedule.prototypes_from_patches = on;
    }
    cfg.projection = a.projection.into();
    if let Some(n) = a.attempts {
        cfg.run.attempts = n;
    }
    if let Some(g) = a.min_attempt_gain {
        cfg.run.min_attempt_gain = Some(g);
    }
    if let Some(on) = a.collapse_constant {
        cfg.collapse_constant = on;
    }
    cfg.device = a.device.open()?;
    let s = run_demo(&cfg, obs).context("demo failed")?;
    println!(
        "demo finished in {:.0} s ({:.0} s training)",
        s.seconds, s.train_seconds
    );
    print_accuracies(
        [s.accuracy_soft, s.accuracy_greedy, s.accuracy_max_leaf],
        [s.fidelity_greedy, s.fidelity_max_leaf],
        s.mean_path_length,
    );
    println!(
        "  {} prototypes, {} classes",
        s.num_prototypes, s.num_classes
    );
    println!(
        "after pruning (tau {:.3}: {} -> {} prototypes) and projection ({}):",
        s.tau, s.num_prototypes, s.num_prototypes_pruned, s.projection
    );
    print_accuracies(
        [
            s.accuracy_soft_pruned,
            s.accuracy_greedy_pruned,
            s.accuracy_max_leaf_pruned,
        ],
        [s.fidelity_greedy_pruned, s.fidelity_max_leaf_pruned],
        s.mean_path_length_pruned,
    );
    println!("  model:   {}", s.model_dir.display());
    println!("  pruned:  {}", s.pruned_model_dir.display());
    println!("  summary: {}", a.out.join("summary.json").display());
    println!("report:    {}", s.report.display());
    Ok(())
}

/// The two summary lines of one model: accuracies (soft, greedy, max-leaf), then
/// fidelities (greedy, max-leaf) and the mean path length.
fn print_accuracies(accuracy: [f64; 3], fidelity: [f64; 2], mean_path: f64) {
    let [soft, greedy, max_leaf] = accuracy.map(|x| 100.0 * x);
    let [fid_greedy, fid_max_leaf] = fidelity.map(|x| 100.0 * x);
    println!("  test accuracy: soft {soft:.1}%  greedy {greedy:.1}%  max-leaf {max_leaf:.1}%");
    println!(
        "  fidelity: greedy {fid_greedy:.1}%  max-leaf {fid_max_leaf:.1}%   mean path {mean_path:.1} decisions"
    );
}
