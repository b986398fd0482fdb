//! A model directory written by the build of 2026-12-01 (before the crate restructuring;
//! `fixtures/models/main-2026-12-01`) still loads and answers as that build did: the same
//! `predict --json` in every routing and the same `inspect --json` (stage included).

mod common;

use common::fixtures;

fn run(args: &[&str]) -> anyhow::Result<String> {
    common::run_quiet_in(Some(&fixtures().join("cub-tiny")), args)
}

fn json_lines(text: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    Ok(text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

#[test]
fn yesterdays_model_directory_answers_the_same() -> anyhow::Result<()> {
    let dir = fixtures().join("models/main-2026-12-01");
    let model = dir.join("projected").display().to_string();
    for routing in ["soft", "greedy", "max-leaf"] {
        let expected = json_lines(&std::fs::read_to_string(
            dir.join(format!("predict_{routing}.jsonl")),
        )?)?;
        let images: Vec<String> = expected
            .iter()
            .filter_map(|v| v["image"].as_str().map(String::from))
            .collect();
        assert_eq!(images.len(), 4);
        let mut args = vec![
            "predict",
            "--model",
            model.as_str(),
            "--json",
            "--routing",
            routing,
        ];
        args.extend(images.iter().map(String::as_str));
        let got = json_lines(&run(&args)?)?;
        assert_eq!(got.len(), expected.len(), "{routing}");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g["class_index"], e["class_index"], "{routing}");
            assert_eq!(
                g["path"].as_array().map(Vec::len),
                e["path"].as_array().map(Vec::len)
            );
            let (gp, ep) = (g["probabilities"].as_array(), e["probabilities"].as_array());
            let (Some(gp), Some(ep)) = (gp, ep) else {
                anyhow::bail!("{routing}: no probabilities");
            };
            assert_eq!(gp.len(), ep.len());
            for (a, b) in gp.iter().zip(ep) {
                let (a, b) = (
                    a.as_f64().unwrap_or(f64::NAN),
                    b.as_f64().unwrap_or(f64::NAN),
                );
                assert!((a - b).abs() <= 1e-6, "{routing}: {a} vs {b}");
            }
        }
    }
    let inspect: serde_json::Value =
        serde_json::from_str(&run(&["inspect", "--model", &model, "--json"])?)?;
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("inspect.json"))?)?;
    assert_eq!(inspect, expected);
    assert_eq!(inspect["config"]["stage"], "projected");
    Ok(())
}
