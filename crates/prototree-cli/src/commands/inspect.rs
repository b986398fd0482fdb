//! `prototree inspect`: describe a saved model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use prototree::prelude::*;
use prototree::tree::SavedModel;

/// `prototree inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// Prints the model's configuration and size.
pub fn run(a: InspectArgs) -> Result<()> {
    let saved = load_model(&a.model, &prototree::candle_core::Device::Cpu)
        .with_context(|| format!("loading {}", a.model.display()))?;
    if a.json {
        print_json(&saved)
    } else {
        print_text(&a, &saved);
        Ok(())
    }
}

fn print_json(saved: &SavedModel) -> Result<()> {
    let (meta, topo) = (&saved.meta, saved.model.topology());
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
    Ok(())
}

fn print_text(a: &InspectArgs, saved: &SavedModel) {
    let (meta, topo) = (&saved.meta, saved.model.topology());
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
