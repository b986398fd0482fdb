//! A training run written by the build of 2026-12-01 (checkpoint format 2, no leaf-sharing
//! log; `fixtures/runs/main-2026-12-01`) resumes with today's build: its two epochs are
//! kept, a third one is trained and logged with its leaf-sharing signature.

mod common;

use std::path::Path;

use common::fixtures;

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

#[test]
fn yesterdays_run_resumes_for_another_epoch() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let run = tmp.path().join("run");
    copy_dir(&fixtures().join("runs/main-2026-12-01"), &run)?;
    let toml_path = run.join("run.toml");
    let data = fixtures().join("cub-tiny").display().to_string();
    let toml: String = std::fs::read_to_string(&toml_path)?
        .lines()
        .map(|l| {
            if l.starts_with("data = ") {
                format!("data = {data:?}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&toml_path, toml)?;
    let run_arg = run.display().to_string();
    common::run_quiet_in(
        None,
        &[
            "train",
            "--resume",
            &run_arg,
            "--epochs",
            "3",
            "--threads",
            "1",
        ],
    )?;
    let log = std::fs::read_to_string(run.join("metrics.jsonl"))?;
    let epochs: Vec<serde_json::Value> = log
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(epochs.len(), 3, "{log}");
    // The old epochs keep their numbers and have no signature; the new one has it.
    let old_log = std::fs::read_to_string(fixtures().join("runs/main-2026-12-01/metrics.jsonl"))?;
    let old: Vec<serde_json::Value> = old_log
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    for (new, old) in epochs.iter().zip(&old) {
        assert_eq!(new["train_loss"], old["train_loss"]);
        assert!(new["leaf_sharing"].is_null());
    }
    let sharing = &epochs[2]["leaf_sharing"];
    assert_eq!(
        sharing["leaves"].as_array().map(Vec::len),
        Some(4),
        "{sharing}"
    );
    assert!(sharing["routing_entropy"]
        .as_f64()
        .is_some_and(|h| h >= 0.0 && h <= 4f64.ln() + 1e-6));
    assert!(sharing["classes_without_leaf"].is_array());
    Ok(())
}
