//! The device-generic path end to end on the CPU: with `PROTOTREE_GENERIC_OPS=1` every op
//! takes the code a GPU runs (no fused CPU kernel). Train a few steps, prune, project,
//! predict with every routing, explain and export through the CLI; the predictions equal
//! those of the fused CPU path on the same model, and imported reference checkpoints
//! still answer as the reference does.

mod common;

use std::process::Command;

use common::{fixtures, ReferenceFixture, ROUTINGS};

const GENERIC: (&str, &str) = ("PROTOTREE_GENERIC_OPS", "1");

/// Runs the CLI (generic ops when `generic`), returning stdout.
fn run(generic: bool, args: &[&str]) -> anyhow::Result<String> {
    Ok(run_with_stderr(generic, args)?.0)
}

/// Runs the CLI (generic ops when `generic`), returning stdout and stderr.
fn run_with_stderr(generic: bool, args: &[&str]) -> anyhow::Result<(String, String)> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prototree"));
    cmd.args(["--quiet", "--threads", "2"]).args(args);
    if generic {
        cmd.env(GENERIC.0, GENERIC.1);
    } else {
        cmd.env_remove(GENERIC.0);
    }
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "prototree {args:?} (generic: {generic}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

/// `predict --json` lines as (class, probabilities).
fn predictions(
    generic: bool,
    model: &str,
    routing: &str,
    images: &[String],
) -> anyhow::Result<Vec<(String, Vec<f64>)>> {
    let mut args = vec!["predict", "--model", model, "--json", "--routing", routing];
    args.extend(images.iter().map(String::as_str));
    run(generic, &args)?
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let probs = v["probabilities"]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default();
            Ok((v["class_index"].to_string(), probs))
        })
        .collect()
}

fn assert_close(a: &[(String, Vec<f64>)], b: &[(String, Vec<f64>)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, ((ca, pa), (cb, pb))) in a.iter().zip(b).enumerate() {
        assert_eq!(ca, cb, "{what}: image {i}");
        assert!(!pa.is_empty() && pa.len() == pb.len(), "{what}: image {i}");
        for (x, y) in pa.iter().zip(pb) {
            assert!((x - y).abs() <= 1e-4, "{what}: image {i}: {x} vs {y}");
        }
    }
}

/// The paths of the CUB-layout data set's test images.
fn test_images(data_dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let read = |name: &str| -> anyhow::Result<Vec<(String, String)>> {
        Ok(std::fs::read_to_string(data_dir.join(name))?
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_string(), b.trim().to_string()))
            .collect())
    };
    let test: std::collections::HashSet<String> = read("train_test_split.txt")?
        .into_iter()
        .filter(|(_, is_train)| is_train == "0")
        .map(|(id, _)| id)
        .collect();
    Ok(read("images.txt")?
        .into_iter()
        .filter(|(id, _)| test.contains(id))
        .map(|(_, path)| data_dir.join("images").join(path).display().to_string())
        .collect())
}

#[test]
fn the_whole_pipeline_runs_on_generic_ops() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let data_dir = fixtures().join("cub-tiny");
    let data = data_dir.display().to_string();
    let p = |name: &str| tmp.path().join(name).display().to_string();
    let (model, pruned, projected) = (p("run"), p("pruned"), p("projected"));
    let (_, stderr) = run_with_stderr(
        true,
        &[
            "train",
            "--data",
            &data,
            "--out",
            &model,
            "--image-size",
            "32",
            "--depth",
            "3",
            "--proto-dim",
            "8",
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--augment",
            "none",
            "--freeze-epochs",
            "1",
            "--attempts",
            "1",
        ],
    )?;
    assert!(
        stderr.contains("generic"),
        "the switch was not seen: {stderr}"
    );
    let (_, stderr) = run_with_stderr(false, &["inspect", "--model", &model])?;
    assert!(!stderr.contains("generic"), "fused run: {stderr}");
    run(
        true,
        &[
            "prune",
            "--model",
            &model,
            "--out",
            &pruned,
            "--data",
            &data,
            "--merge-same-class",
            "--collapse-constant",
        ],
    )?;
    run(
        true,
        &[
            "project", "--model", &pruned, "--data", &data, "--out", &projected,
        ],
    )?;
    // Test-split images: a training image that a prototype was projected onto is at
    // distance ~0 from it, where √d turns the two paths' rounding of the expanded
    // ‖z‖² − 2z·p + ‖p‖² (about 1e-6) into similarity differences of a few 1e-4.
    let images = test_images(&data_dir)?;
    assert!(images.len() >= 2, "fixture images: {images:?}");
    for routing in ["soft", "greedy", "max-leaf"] {
        let generic = predictions(true, &projected, routing, &images)?;
        let fused = predictions(false, &projected, routing, &images)?;
        assert_close(&generic, &fused, routing);
    }
    let explained = p("explained");
    run(
        true,
        &[
            "explain", "--model", &projected, "--out", &explained, &images[0],
        ],
    )?;
    assert!(
        std::fs::read_dir(&explained)?.count() > 0,
        "explain wrote nothing"
    );
    for format in ["dot", "svg", "json"] {
        let out = p(&format!("tree.{format}"));
        run(
            true,
            &[
                "export", "--model", &projected, "--format", format, "--out", &out,
            ],
        )?;
        assert!(
            std::fs::metadata(&out)?.len() > 0,
            "{format} export is empty"
        );
    }
    let eval = run(
        true,
        &["eval", "--model", &projected, "--data", &data, "--json"],
    )?;
    assert!(eval.contains("accuracy"), "eval --json: {eval}");
    Ok(())
}

/// The reference's own checkpoints, imported, answer as the reference does on the generic
/// path too (soft, greedy path-only and max-leaf routing).
#[test]
fn imported_reference_models_match_on_generic_ops() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = ReferenceFixture::open("smallcnn_d4_pruned_log")?;
    let expected = &fixture.expected;
    let out = tmp.path().join("imported").display().to_string();
    let import = fixture.import_args(&out);
    run(true, &import.iter().map(String::as_str).collect::<Vec<_>>())?;
    let images = fixture.images();
    assert!(!images.is_empty());
    for (routing, key) in ROUTINGS {
        let got = predictions(true, &out, routing, &images)?;
        for (i, (_, probs)) in got.iter().enumerate() {
            let want: Vec<f64> = expected[key]["probabilities"][i]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                .unwrap_or_default();
            assert_eq!(probs.len(), want.len(), "{routing}: image {i}");
            for (x, y) in probs.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-4, "{routing}: image {i}: {x} vs {y}");
            }
        }
    }
    Ok(())
}
