//! A full disk and a read-only checkpoint directory during checkpoint writes: the run
//! stops with exit code 1 and a one-line error saying why, and the previous checkpoint
//! stays loadable (and resumes once there is room again).
//!
//! Both need `mount` (a small tmpfs; read-only by remounting it, since root ignores
//! permission bits): where mounting is not allowed the tests say so and pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Result};
use common::cub_tiny;
use prototree::candle_core::Device;
use prototree::learn::load_checkpoint;
use prototree::train::last_checkpoint_dir;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(at.to_path_buf()))
    }

    fn remount(&self, opts: &str) -> Result<()> {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()?;
        ensure!(s.success(), "remount {opts} failed");
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `prototree --quiet --threads 1 train ARGS`: exit code and stderr.
fn train(args: &[&str]) -> Result<(Option<i32>, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_prototree"))
        .args(["--quiet", "--threads", "1", "train"])
        .args(args)
        .stdout(Stdio::null())
        .output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// One epoch of a small run into `out`.
fn first_epoch(out: &str) -> Result<()> {
    let data = cub_tiny();
    let (code, err) = train(&[
        "--data",
        &data,
        "--out",
        out,
        "--image-size",
        "32",
        "--depth",
        "2",
        "--proto-dim",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--augment",
        "none",
        "--freeze-epochs",
        "0",
        "--attempts",
        "1",
    ])?;
    ensure!(code == Some(0), "first epoch failed: {err}");
    Ok(())
}

/// Asserts a clean failure naming `needle`, then that the last checkpoint still loads
/// after one epoch.
fn stopped_cleanly(code: Option<i32>, err: &str, needle: &str, run: &Path) -> Result<()> {
    let line = err.trim_end();
    ensure!(code == Some(1), "exit code {code:?}: {line}");
    ensure!(!line.contains('\n'), "more than one line: {line}");
    ensure!(line.contains(needle), "`{needle}` not in: {line}");
    let ck = load_checkpoint(&last_checkpoint_dir(run), &Device::Cpu)
        .map_err(|e| anyhow::anyhow!("the previous checkpoint does not load: {e}"))?;
    ensure!(
        ck.state.epochs_done == 1,
        "epochs done {}",
        ck.state.epochs_done
    );
    Ok(())
}

#[test]
fn a_full_disk_stops_the_run_and_keeps_the_previous_checkpoint() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fs = tmp.path().join("fs");
    let Some(_mount) = Mount::tmpfs(&fs, "32m") else {
        eprintln!("cannot mount a tmpfs here: the disk-full test is skipped");
        return Ok(());
    };
    let run = fs.join("run");
    let run_s = run.display().to_string();
    first_epoch(&run_s)?;
    // Fill the file system in 64 KiB pieces, then free 256 KiB: room for the small
    // files of a resumed run, not for a checkpoint (~1.5 MB).
    let piece = vec![0u8; 64 << 10];
    let mut pieces = Vec::new();
    loop {
        let p = fs.join(format!("filler{}", pieces.len()));
        if std::fs::write(&p, &piece).is_err() {
            let _ = std::fs::remove_file(&p);
            break;
        }
        pieces.push(p);
    }
    for p in pieces.iter().rev().take(4) {
        std::fs::remove_file(p)?;
    }
    let (code, err) = train(&["--resume", &run_s, "--epochs", "2"])?;
    stopped_cleanly(code, &err, "No space left on device", &run)?;
    // With room again, the run resumes from that checkpoint.
    for p in &pieces {
        let _ = std::fs::remove_file(p);
    }
    let (code, err) = train(&["--resume", &run_s, "--epochs", "2"])?;
    ensure!(code == Some(0), "resume after freeing space failed: {err}");
    Ok(())
}

#[test]
fn a_read_only_checkpoint_directory_stops_the_run_and_keeps_the_previous_checkpoint() -> Result<()>
{
    let tmp = tempfile::tempdir()?;
    let run = tmp.path().join("run");
    let run_s = run.display().to_string();
    first_epoch(&run_s)?;
    // Move the checkpoints onto a tmpfs of their own, then make it read-only.
    let checkpoints = last_checkpoint_dir(&run)
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("no checkpoint directory"))?;
    let saved = tmp.path().join("saved");
    std::fs::rename(&checkpoints, &saved)?;
    let Some(mount) = Mount::tmpfs(&checkpoints, "32m") else {
        eprintln!("cannot mount a tmpfs here: the read-only test is skipped");
        return Ok(());
    };
    let s = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", saved.display()))
        .arg(&checkpoints)
        .status()?;
    ensure!(s.success(), "copying the checkpoints failed");
    mount.remount("ro")?;
    let (code, err) = train(&["--resume", &run_s, "--epochs", "2"])?;
    stopped_cleanly(code, &err, "Read-only file system", &run)?;
    Ok(())
}
