//! `prototree synth`: a synthetic fine-grained "birds" data set.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use prototree::data::SynthConfig;
use prototree::prelude::*;

use super::output_dir;
use crate::progress::CliProgress;

/// `prototree synth`.
#[derive(Args)]
pub struct SynthArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    counts: BirdCounts,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Share of images in the training split.
    #[arg(long, default_value_t = 0.7)]
    train_fraction: f32,
    /// Largest rotation of a bird either way, in degrees (default about 15).
    #[arg(long)]
    max_rotation: Option<f32>,
    /// Probability that an image gets an occluder over one of the bird's parts.
    #[arg(long, default_value_t = 0.0)]
    occlusion: f32,
    /// Parts per bird, three variants each: 5 (crest, beak, eye, wing, tail), 6 adds a
    /// breast patch, 7 also legs.
    #[arg(long, default_value_t = prototree::data::synth::parts::DEFAULT_PARTS)]
    parts: usize,
}

/// How many synthetic birds (shared with `prototree demo`).
#[derive(Args)]
pub struct BirdCounts {
    /// Number of classes (2–243 with five parts, 3^parts with more; up to a third of that
    /// every two differ in at least two parts).
    #[arg(long, default_value_t = 12)]
    pub(super) classes: usize,
    /// Images per class.
    #[arg(long, default_value_t = 80)]
    pub(super) per_class: usize,
}

/// Writes the data set and prints its summary.
pub fn run(a: SynthArgs, obs: &mut CliProgress) -> Result<()> {
    output_dir(&a.out)?;
    let cfg = SynthConfig {
        classes: a.counts.classes,
        per_class: a.counts.per_class,
        size: a.size,
        seed: a.seed,
        train_fraction: a.train_fraction,
        max_rotation: a
            .max_rotation
            .map_or(prototree::data::DEFAULT_MAX_ROTATION, f32::to_radians),
        occlusion: a.occlusion,
        parts: a.parts,
    };
    cfg.check()?;
    let obs: &mut dyn Observer = obs;
    obs.stage_started(Stage::Synthesize, a.counts.classes * a.counts.per_class);
    let summary = prototree::data::generate(&cfg, &a.out, &mut |done, _| obs.stage_progress(done))
        .with_context(|| format!("generating synthetic birds into {}", a.out.display()))?;
    obs.stage_finished(Stage::Synthesize);
    println!("{summary}");
    Ok(())
}
