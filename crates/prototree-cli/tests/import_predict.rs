//! `prototree import` of the reference's own checkpoints, then `prototree predict --json`
//! on the reference's test images reproduces its probabilities (≤ 1e-4) and predictions.

mod common;

use common::{ReferenceFixture, ROUTINGS};

fn run(args: &[&str]) -> anyhow::Result<String> {
    common::run_quiet_in(None, args)
}

#[test]
fn imported_reference_models_predict_as_the_reference() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    for name in [
        "smallcnn_d3",
        "smallcnn_d4_pruned_log",
        "smallcnn_d2_kontschieder_legacy",
    ] {
        let fixture = ReferenceFixture::open(name)?;
        let expected = &fixture.expected;
        let out_s = tmp.path().join(name).display().to_string();
        let import = fixture.import_args(&out_s);
        run(&import.iter().map(String::as_str).collect::<Vec<_>>())?;
        let images = fixture.images();
        assert!(!images.is_empty());
        for (routing, key) in ROUTINGS {
            let mut args = vec![
                "predict",
                "--model",
                out_s.as_str(),
                "--json",
                "--routing",
                routing,
            ];
            args.extend(images.iter().map(String::as_str));
            let stdout = run(&args)?;
            let lines: Vec<serde_json::Value> = stdout
                .lines()
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()?;
            assert_eq!(lines.len(), images.len());
            for (i, line) in lines.iter().enumerate() {
                let want = &expected[key]["probabilities"][i];
                let got = &line["probabilities"];
                let n = want.as_array().map(Vec::len).unwrap_or(0);
                assert!(n > 0 && got.as_array().map(Vec::len) == Some(n));
                for k in 0..n {
                    let (a, b) = (
                        got[k].as_f64().unwrap_or(f64::NAN),
                        want[k].as_f64().unwrap_or(0.0),
                    );
                    assert!(
                        (a - b).abs() <= 1e-4,
                        "{name} {routing} image {i} class {k}: {a} vs {b}"
                    );
                }
                assert_eq!(
                    line["class_index"], expected[key]["predictions"][i],
                    "{name} {routing} image {i}"
                );
                assert!(line["path"].as_array().is_some_and(|p| !p.is_empty()));
            }
        }
    }
    Ok(())
}
