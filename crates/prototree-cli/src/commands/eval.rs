//! `prototree eval`: a saved model on the test split of a data set.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use prototree::eval::EvalDetails;
use prototree::explanation_metrics::ExplanationMetrics;

use super::DeviceArg;
use crate::progress::CliProgress;

/// `prototree eval`.
#[derive(Args)]
pub struct EvalArgs {
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
    /// With --explanations: take a region's parts from the keypoints (a part is in a box
    /// when its keypoint is, as Huang et al. and PIP-Net do on CUB) even where the masks
    /// carry part labels.
    #[arg(long, requires = "explanations")]
    parts_from_keypoints: bool,
    /// With --explanations: measure on at most N test images, spread evenly over the split
    /// (the occlusion boxes take about 100 forward passes per image: bound them on a CPU
    /// for large data sets).
    #[arg(long, value_name = "N", requires = "explanations")]
    max_images: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[command(flatten)]
    device: DeviceArg,
}

/// Evaluates the model; prints the report as text or JSON.
pub fn run(a: EvalArgs, obs: &mut CliProgress) -> Result<()> {
    use prototree::limits::{check, maxima};
    check::in_range(
        "",
        "--batch-size",
        a.batch_size as u64,
        1,
        maxima::MAX_BATCH_SIZE,
    )?;
    if let Some(n) = a.max_images {
        check::in_range("", "--max-images", n, 1, maxima::MAX_CUB_LINES)?;
    }
    let device = a.device.open()?;
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
                &a.model,
                &a.data,
                &prototree::explanation_metrics::MetricsConfig {
                    parts_from_keypoints: a.parts_from_keypoints,
                    max_images: a.max_images.map(|n| n as usize),
                    batch_size: a.batch_size,
                    ..Default::default()
                },
                &device,
                obs,
            )
            .with_context(|| format!("measuring the explanations of {}", a.model.display()))?,
        )
    } else {
        None
    };
    if a.json {
        return print_json(&d, metrics.as_ref());
    }
    print_text(&a, &d, metrics.as_ref());
    Ok(())
}

/// The detailed evaluation as JSON, the explanation metrics (and their headline
/// numbers at the top level) added.
fn print_json(d: &EvalDetails, metrics: Option<&ExplanationMetrics>) -> Result<()> {
    let mut v = serde_json::to_value(d)?;
    if let (Some(m), Some(obj)) = (metrics, v.as_object_mut()) {
        obj.insert("explanations".into(), serde_json::to_value(m)?);
        for (k, x) in m.headline() {
            obj.insert(k.into(), x.into());
        }
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn print_text(a: &EvalArgs, d: &EvalDetails, metrics: Option<&ExplanationMetrics>) {
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
    if let Some(m) = metrics {
        println!("explanation quality:");
        for (k, v) in m.report_rows() {
            println!("  {k}: {v}");
        }
    }
}
