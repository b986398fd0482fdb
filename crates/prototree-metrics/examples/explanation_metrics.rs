//! Measures the explanations of a saved model on a CUB-layout data set with part
//! annotations and prints the metrics as JSON.
//!
//! `cargo run --release -p prototree-metrics --example explanation_metrics -- MODEL_DIR DATA_DIR`

use std::path::PathBuf;

use candle_core::Device;
use prototree_metrics::explanation_metrics;
use prototree_tree::{Event, Observer};

/// Prints each phase's name as it starts.
struct Messages;

impl Observer for Messages {
    fn on_event(&mut self, event: &Event<'_>) {
        if let Event::Message(text) = event {
            eprintln!("{text}");
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(model), Some(data)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: explanation_metrics MODEL_DIR DATA_DIR");
    };
    let device = Device::Cpu;
    let saved = prototree_tree::load_model(&PathBuf::from(model), &device)?;
    let metrics = explanation_metrics(&saved, &PathBuf::from(data), &device, &mut Messages)?;
    println!("{}", serde_json::to_string_pretty(&metrics)?);
    Ok(())
}
