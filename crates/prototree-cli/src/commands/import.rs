//! `prototree import`: a checkpoint of the PyTorch reference implementation.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use prototree::reference::{import_reference, ImportOptions};

/// The fields of the import report that the text output shows.
const SUMMARY_KEYS: [&str; 5] = [
    "backbone",
    "depth",
    "num_classes",
    "num_decisions",
    "pruned",
];

/// `prototree import`.
#[derive(Args)]
pub struct ImportArgs {
    /// Checkpoint directory saved by the PyTorch reference (model_state.pth, tree.pkl / model.pth).
    #[arg(long)]
    reference: PathBuf,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    /// File with one class name per line (default: class_000, class_001, …).
    #[arg(long)]
    class_names: Option<PathBuf>,
    /// Input side in pixels the model was trained at (default 224).
    #[arg(long)]
    image_size: Option<u32>,
    /// Print the import report as JSON.
    #[arg(long)]
    json: bool,
}

/// Converts the reference checkpoint into a model directory.
pub fn run(a: ImportArgs) -> Result<()> {
    if let Some(s) = a.image_size {
        use prototree::limits::{check, maxima};
        check::in_range(
            "",
            "--image-size",
            u64::from(s),
            maxima::MIN_IMAGE_SIDE,
            maxima::MAX_IMAGE_SIDE,
        )?;
    }
    let opts = ImportOptions {
        class_names: a.class_names.as_deref().map(read_class_names).transpose()?,
        image_size: a.image_size,
        stage: None,
    };
    let report = import_reference(&a.reference, &a.out, &opts)
        .with_context(|| format!("importing {}", a.reference.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "imported {} into {}",
        a.reference.display(),
        a.out.display()
    );
    let v = serde_json::to_value(&report)?;
    for key in SUMMARY_KEYS {
        if let Some(x) = v.get(key) {
            println!("  {key}: {x}");
        }
    }
    Ok(())
}

/// The non-empty lines of `path`, trimmed; at least one.
fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading class names from {}", path.display()))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        bail!("{}: no class names", path.display());
    }
    Ok(names)
}
