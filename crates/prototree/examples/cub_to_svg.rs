//! Train on a CUB-layout folder, prune, project, and write the tree as SVG.
//!
//! ```text
//! cargo run --release -p prototree --example cub_to_svg -- DATA RUN [TREE.svg]
//! cargo run --release -p prototree --example cub_to_svg   # the committed fixtures, 2 epochs
//! ```

use std::path::PathBuf;

use prototree::candle_core::Device;
use prototree::prelude::*;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(PathBuf::from);
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/cub-tiny");
    let data = args.next().unwrap_or(fixtures.clone());
    let run = args
        .next()
        .unwrap_or_else(|| std::env::temp_dir().join("cub_to_svg_run"));
    let svg = args.next().unwrap_or_else(|| run.with_extension("svg"));
    let mut config = RunConfig {
        data: data.clone(),
        ..RunConfig::default()
    };
    if data == fixtures {
        // A few seconds on the tiny fixture set.
        (config.depth, config.proto_dim, config.image_size) = (3, 8, 32);
        config.schedule.epochs = 2;
    }
    train(
        &config,
        &run,
        RunMode::Overwrite,
        &Device::Cpu,
        &Interrupter::new(),
        &mut (),
    )?;
    let mut model = ModelDir::open(&run, &Device::Cpu)?;
    let pruning = model.prune(0.01)?;
    model.project(&data, &mut ())?;
    model.save(&run.join("projected"))?;
    model.export(ExportFormat::Svg, &svg)?;
    println!(
        "{} of {} decisions kept",
        pruning.decisions_after, pruning.decisions_before
    );
    println!("{}", model.evaluate(&data, &mut ())?);
    println!("tree: {}", svg.display());
    Ok(())
}
