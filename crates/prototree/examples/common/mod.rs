//! What the benchmark examples share (not an example itself: `mod common;` in each).

/// The process's peak resident memory in MB (`VmHWM` of `/proc/self/status`; 0 where it
/// cannot be read).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Applies a flag the training examples share (`--data`, `--backbone`, `--size`,
/// `--batch`, `--epochs`, `--augmentation`, `--seed`, `--threads`) to `cfg`; `false` for
/// any other flag.
#[allow(dead_code)] // not every example trains from a RunConfig
pub fn run_config_flag(
    cfg: &mut prototree::prelude::RunConfig,
    flag: &str,
    value: &str,
) -> anyhow::Result<bool> {
    let s = &mut cfg.schedule;
    match flag {
        "--data" => cfg.data = value.into(),
        "--backbone" => cfg.backbone = value.parse()?,
        "--size" => cfg.image_size = value.parse()?,
        "--batch" => s.batch_size = value.parse()?,
        "--epochs" => s.epochs = value.parse()?,
        "--augmentation" => cfg.augmentation = value.parse()?,
        "--seed" => s.seed = value.parse()?,
        "--threads" => std::env::set_var("RAYON_NUM_THREADS", value),
        _ => return Ok(false),
    }
    Ok(true)
}
