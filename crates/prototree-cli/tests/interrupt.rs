//! Ctrl-C (SIGINT) during `prototree train`: the run finishes its step, saves what it has
//! trained, exits with a message naming `--resume`, and resuming finishes the run.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cub_tiny;
use prototree::candle_core::Device;
use prototree::learn::load_checkpoint;
use prototree::train::last_checkpoint_dir;

#[test]
fn sigint_saves_and_the_run_resumes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("run");
    let out_s = out.display().to_string();
    let data = cub_tiny();
    let mut child = Command::new(env!("CARGO_BIN_EXE_prototree"))
        .args([
            "--quiet",
            "--threads",
            "1",
            "train",
            "--data",
            &data,
            "--out",
            &out_s,
        ])
        .args(["--image-size", "32", "--depth", "2", "--proto-dim", "8"])
        .args([
            "--epochs",
            "100000",
            "--batch-size",
            "4",
            "--augment",
            "none",
        ])
        .args(["--freeze-epochs", "0", "--attempts", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let last = last_checkpoint_dir(&out);
    let start = Instant::now();
    // The first checkpoint is written after the backbone warm-up (epoch 0): wait for an
    // epoch's.
    let epochs_saved = || {
        load_checkpoint(&last, &Device::Cpu)
            .map(|c| c.state.epochs_done)
            .unwrap_or(0)
    };
    while epochs_saved() < 1 {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            anyhow::bail!("no checkpoint within 120 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(20));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    assert!(status.success(), "kill -INT failed");
    let output = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "an interrupted run must not report success"
    );
    assert!(stderr.contains("--resume"), "{stderr}");
    assert!(stderr.contains("finishing the current step"), "{stderr}");

    let ck = load_checkpoint(&last, &Device::Cpu)?;
    let done = ck.state.epochs_done;
    assert!(done >= 1);
    let warmup_log = std::fs::read_to_string(out.join("warmup.jsonl"))?;
    assert_eq!(
        warmup_log.lines().count(),
        10,
        "the scratch recipe's warm-up"
    );
    let target = (done + 1).to_string();
    let status = Command::new(env!("CARGO_BIN_EXE_prototree"))
        .args(["--quiet", "--threads", "1", "train", "--resume", &out_s])
        .args(["--epochs", &target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    assert!(status.success());
    let ck = load_checkpoint(&last, &Device::Cpu)?;
    assert_eq!(ck.state.epochs_done, done + 1);
    assert!(ck.state.partial_epoch.is_none());
    // Resuming did not warm up again.
    assert_eq!(
        std::fs::read_to_string(out.join("warmup.jsonl"))?,
        warmup_log
    );
    Ok(())
}
