//! A training process killed with SIGKILL at arbitrary moments (including during checkpoint
//! writes) leaves a checkpoint that loads, and `--resume` finishes the run.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cub_tiny;
use prototree::candle_core::Device;
use prototree::learn::load_checkpoint;
use prototree::train::last_checkpoint_dir;

fn train_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prototree"));
    cmd.arg("--quiet")
        .arg("--threads")
        .arg("1")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// `prototree train` of a new run on `data` into `out` for `epochs` epochs: 32 px, depth
/// 2, 8-channel prototypes, batches of 8, no augmentation, no frozen epochs.
fn fresh_train(data: &str, out: &str, epochs: &str) -> Command {
    train_cmd(&[
        "train",
        "--data",
        data,
        "--out",
        out,
        "--image-size",
        "32",
        "--depth",
        "2",
        "--proto-dim",
        "8",
        "--epochs",
        epochs,
        "--batch-size",
        "8",
        "--augment",
        "none",
        "--freeze-epochs",
        "0",
        "--attempts",
        "1",
    ])
}

#[test]
fn killed_runs_keep_a_loadable_checkpoint_and_resume() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("run");
    let out_s = out.display().to_string();
    let data = cub_tiny();
    let last = last_checkpoint_dir(&out);
    let mut done_before = 0;
    // Kill points spread over an epoch: checkpoints are written every few tens of ms.
    for (round, extra_ms) in [0u64, 37, 81, 133].into_iter().enumerate() {
        let mut cmd = if round == 0 {
            fresh_train(&data, &out_s, "100000")
        } else {
            train_cmd(&["train", "--resume", &out_s])
        };
        let mut child = cmd.spawn()?;
        // Wait for a checkpoint newer than the one we started from, then a little more.
        let start = Instant::now();
        loop {
            if let Ok(ck) = load_checkpoint(&last, &Device::Cpu) {
                if ck.state.epochs_done > done_before {
                    break;
                }
            }
            if start.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                anyhow::bail!("no new checkpoint within 120 s (round {round})");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(extra_ms));
        child.kill()?; // SIGKILL
        child.wait()?;
        let ck = load_checkpoint(&last, &Device::Cpu)
            .map_err(|e| anyhow::anyhow!("round {round}: checkpoint does not load: {e}"))?;
        assert!(ck.state.epochs_done > done_before, "round {round}");
        done_before = ck.state.epochs_done;
    }
    // Finish: resume with the schedule shortened to one more epoch.
    let target = (done_before + 1).to_string();
    let status = train_cmd(&["train", "--resume", &out_s, "--epochs", &target]).status()?;
    assert!(status.success());
    let ck = load_checkpoint(&last, &Device::Cpu)?;
    assert_eq!(ck.state.epochs_done, done_before + 1);
    assert!(out.join("model.safetensors").is_file());

    // The same schedule run without interruption ends with the same model and metrics.
    let straight = dir.path().join("straight");
    let straight_s = straight.display().to_string();
    let status = fresh_train(&data, &straight_s, &target).status()?;
    assert!(status.success());
    let tensors = |d: &Path| -> anyhow::Result<Vec<(String, Vec<f32>)>> {
        let mut v: Vec<(String, Vec<f32>)> =
            prototree::candle_core::safetensors::load(d.join("model.safetensors"), &Device::Cpu)?
                .into_iter()
                .map(|(k, t)| Ok((k, t.flatten_all()?.to_vec1::<f32>()?)))
                .collect::<anyhow::Result<_>>()?;
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(v)
    };
    assert!(
        tensors(&out)? == tensors(&straight)?,
        "killed + resumed run differs from the straight run"
    );
    let losses = |d: &Path| -> anyhow::Result<Vec<f64>> {
        std::fs::read_to_string(d.join("metrics.jsonl"))?
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)?;
                Ok(v["train_loss"].as_f64().unwrap_or(f64::NAN))
            })
            .collect()
    };
    assert_eq!(losses(&out)?, losses(&straight)?);
    Ok(())
}
