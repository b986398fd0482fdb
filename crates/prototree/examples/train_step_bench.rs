//! One full training step (backbone + add-on + tree: forward, NLL, backward, Adam step,
//! derivative-free leaf update) timed over a few iterations; prints one JSON line, for
//! scripts and benches/compare_train_step.sh.
//!
//! ```text
//! cargo run --release -p prototree --example train_step_bench -- \
//!     --backbone resnet18 --size 224 --batch 16 --depth 9 --features 256 --classes 200 --iters 5 --threads 2
//! ```

mod common;

use std::time::Instant;

use anyhow::{bail, Result};
use prototree::candle_core::{Device, Tensor};
use prototree::prelude::*;
use prototree::source::RepeatedBatch;
use prototree::tree::Batch;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Records the wall time and the process's CPU time at which each batch finishes.
struct Clock(Vec<(Instant, f64)>);
impl Observer for Clock {
    fn on_event(&mut self, event: &Event<'_>) {
        if let Event::BatchFinished(_) = event {
            self.0.push((Instant::now(), cpu_ms()));
        }
    }
}

/// User + system CPU time of this process so far, in ms (Linux `/proc/self/stat`, clock
/// ticks assumed 100 Hz; 0 elsewhere). Less sensitive than wall time to other load.
fn cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which is in parentheses): utime is the 12th,
            // stime the 13th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let (u, k) = (
                f.get(11)?.parse::<f64>().ok()?,
                f.get(12)?.parse::<f64>().ok()?,
            );
            Some((u + k) * 10.0)
        })
        .unwrap_or(0.0)
}

/// mimalloc returns freed memory to the OS after 10 ms by default, so every large tensor
/// of the next step is mapped (and zeroed by the kernel) afresh. Keep freed memory for
/// reuse: re-run this process once with `MIMALLOC_PURGE_DELAY=-1` (mimalloc reads its
/// options from the environment at start-up), unless the caller set it.
#[cfg(unix)]
fn keep_freed_memory() -> Result<()> {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return Ok(());
    }
    let err = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env("MIMALLOC_PURGE_DELAY", "-1")
        .exec();
    Err(err.into())
}

#[cfg(not(unix))]
fn keep_freed_memory() -> Result<()> {
    Ok(())
}

fn main() -> Result<()> {
    keep_freed_memory()?;
    let mut backbone = BackboneKind::Resnet18;
    let (mut size, mut batch, mut depth, mut features, mut classes, mut iters) =
        (224usize, 16usize, 9usize, 256usize, 200usize, 5usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--backbone" => backbone = v.parse()?,
            "--size" => size = v.parse()?,
            "--batch" => batch = v.parse()?,
            "--depth" => depth = v.parse()?,
            "--features" => features = v.parse()?,
            "--classes" => classes = v.parse()?,
            "--iters" => iters = v.parse()?,
            "--threads" => std::env::set_var("RAYON_NUM_THREADS", &v),
            other => bail!("unknown argument {other}"),
        }
    }
    let dev = Device::Cpu;
    let cfg = TreeConfig {
        backbone,
        depth,
        proto_dim: features,
        num_classes: classes,
    }
    .check()?;
    let model = ProtoTree::new(&cfg, &dev, 0)?;
    let train = TrainConfig {
        epochs: 1,
        batch_size: batch,
        freeze_epochs: 0,
        ..TrainConfig::default()
    };
    let mut learner = Learner::builder(model, &train).build()?;
    let images = Tensor::rand(0f32, 1.0, (batch, 3, size, size), &dev)?;
    let labels = Tensor::from_vec(
        (0..batch as u32)
            .map(|i| i % classes as u32)
            .collect::<Vec<_>>(),
        batch,
        &dev,
    )?;
    let mut source = RepeatedBatch::new(Batch { images, labels }, iters + 1);
    let start = Instant::now();
    let mut clock = Clock(Vec::new());
    learner.train_epoch(&mut source, None, &mut clock)?;
    // Step times after the first (warm-up) step.
    let mut times: Vec<f64> = clock
        .0
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_secs_f64() * 1e3)
        .collect();
    times.sort_by(f64::total_cmp);
    let mut cpu: Vec<f64> = clock.0.windows(2).map(|w| w[1].1 - w[0].1).collect();
    cpu.sort_by(f64::total_cmp);
    let cpu_median = cpu.get(cpu.len() / 2).copied().unwrap_or(0.0);
    let median = times
        .get(times.len() / 2)
        .copied()
        .unwrap_or(start.elapsed().as_secs_f64() * 1e3);
    println!(
        "{}",
        serde_json::json!({
            "step_ms": median,
            "step_cpu_ms": cpu_median,
            "peak_rss_mb": common::peak_rss_mb(),
            "backbone": backbone.name(),
            "size": size,
            "batch": batch,
            "depth": depth,
            "threads": std::env::var("RAYON_NUM_THREADS").unwrap_or_default(),
            "mimalloc_purge_delay": std::env::var("MIMALLOC_PURGE_DELAY").unwrap_or_default(),
        })
    );
    Ok(())
}
