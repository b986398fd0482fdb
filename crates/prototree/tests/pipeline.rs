//! End to end on a tiny synthetic bird set: generate, train, save, reload, evaluate.

use prototree::data::SynthConfig;
use prototree::eval::evaluate_dir;
use prototree::prelude::*;
use prototree::tree::load_model;

#[test]
fn tiny_synthetic_run_beats_chance_and_reloads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = DemoConfig::new(dir.path().to_path_buf());
    cfg.synth = SynthConfig {
        classes: 4,
        per_class: 40,
        size: 32,
        seed: 3,
        train_fraction: 0.7,
        ..Default::default()
    };
    cfg.run.depth = 3;
    cfg.run.proto_dim = 16;
    cfg.run.schedule.epochs = 12;
    cfg.run.schedule.batch_size = 16;
    cfg.run.schedule.milestones = vec![];
    cfg.run.schedule.seed = 3;
    // The scratch recipe's start (the demo's own default is the random start).
    cfg.run.schedule.backbone_warmup_epochs = 10;
    cfg.run.schedule.prototypes_from_patches = true;
    let summary = run_demo(&cfg, &mut ())?;
    assert_eq!(summary.num_classes, 4);
    assert_eq!(summary.num_prototypes, 7);
    assert!(
        summary.accuracy_soft >= 0.6,
        "soft accuracy {} (chance 0.25)",
        summary.accuracy_soft
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json"))?)?;
    for key in [
        "accuracy_soft",
        "accuracy_greedy",
        "accuracy_max_leaf",
        "fidelity_greedy",
        "fidelity_max_leaf",
        "num_prototypes",
        "num_classes",
        "seconds",
        "num_prototypes_pruned",
        "accuracy_soft_pruned",
        "fidelity_greedy_pruned",
    ] {
        assert!(json.get(key).is_some(), "summary.json lacks {key}");
    }
    assert!(summary.num_prototypes_pruned <= summary.num_prototypes);
    // The pruned + projected model reloads with its projection records.
    let pruned = load_model(
        &summary.pruned_model_dir,
        &prototree::candle_core::Device::Cpu,
    )?;
    assert_eq!(pruned.projections().len(), summary.num_prototypes_pruned);
    assert_eq!(pruned.stage(), prototree::tree::ModelStage::Projected);
    // The saved model reloads and evaluates to the same accuracy.
    let device = prototree::candle_core::Device::Cpu;
    let saved = load_model(&summary.model_dir, &device)?;
    assert_eq!(saved.meta.class_names.len(), 4);
    let report = evaluate_dir(&summary.model_dir, &summary.data_dir, 32, &device, &mut ())?;
    assert!((report.accuracy_soft - summary.accuracy_soft).abs() < 1e-9);

    // The report is one self-contained page with the tree, patches and explanations.
    let html = std::fs::read_to_string(&summary.report)?;
    assert!(html.contains("<svg") && html.contains("data:image/png;base64,"));
    assert!(!html.contains("src=\"http") && !html.contains("<script src"));
    // The demo's backbone warm-up is in the training section.
    assert!(
        html.contains(
            "Backbone warm-up: before the tree's first epoch the backbone trained for 10 epochs"
        ),
        "no warm-up in the report"
    );
    // Every prototype's card shows its most similar training patches, with their purity
    // (the synthetic birds have part masks), and its tree node links to it.
    assert_eq!(
        html.matches("most similar training patches:").count(),
        summary.num_prototypes_pruned
    );
    assert_eq!(
        html.matches("purity, top 10 training patches").count(),
        summary.num_prototypes_pruned
    );
    assert_eq!(
        html.matches("class=\"tree-node\"").count(),
        summary.num_prototypes_pruned
    );
    assert!(html.contains("separates its subtrees"));
    let pages: Vec<_> = std::fs::read_dir(dir.path().join("explanations"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("index.html").is_file())
        .collect();
    assert_eq!(pages.len(), cfg.explain_images);
    for p in &pages {
        let href = format!(
            "explanations/{}/index.html",
            p.file_name().to_string_lossy()
        );
        assert!(html.contains(&href), "report does not link {href}");
    }
    // Each explanation's path is the model's greedy path for that image.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("explanations/index.json"))?)?;
    let first = &index[0];
    let image = std::path::PathBuf::from(first["image"].as_str().unwrap_or_default());
    let again = explain_images(&pruned, &[image], None, &dir.path().join("again"), &mut ())?;
    let path: Vec<u64> = again[0]
        .explanation
        .steps
        .iter()
        .map(|s| u64::from(s.node.0))
        .collect();
    let listed: Vec<u64> = first["path"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["node"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(path, listed);
    // Every decision on the path has an occlusion box of its patch box's size.
    for step in first["path"].as_array().into_iter().flatten() {
        let size = |key: &str| -> Option<(u64, u64)> {
            let b: Vec<u64> = step[key]
                .as_array()?
                .iter()
                .filter_map(|v| v.as_u64())
                .collect();
            (b.len() == 4).then(|| (b[2] - b[0], b[3] - b[1]))
        };
        assert!(size("occlusion_box").is_some(), "no occlusion box: {step}");
        assert_eq!(size("occlusion_box"), size("box"));
    }
    assert_eq!(
        again[0].class_index as u64,
        first["class_index"].as_u64().unwrap_or(999)
    );

    // The prototype pictures' orange box is the explanation metrics' source occlusion box.
    let (pictures, missing) = prototree::prototype_picture::prototype_pictures(&pruned)?;
    assert!(missing.is_empty(), "{missing:?}");
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("explanation_metrics.json"))?)?;
    let mut compared = 0;
    for p in metrics["prototypes"].as_array().into_iter().flatten() {
        let (Some(node), Some(b)) = (p["node"].as_u64(), p["source"]["occlusion_box"].as_array())
        else {
            continue;
        };
        let b: Vec<u64> = b.iter().filter_map(|v| v.as_u64()).collect();
        let node = prototree::tree::NodeId(u32::try_from(node)?);
        let pic = pictures
            .get(&node)
            .ok_or_else(|| anyhow::anyhow!("no picture of node {node}"))?;
        let drawn: Vec<u64> = pic.occlusion_box.iter().map(|v| u64::from(*v)).collect();
        assert_eq!(drawn, b, "node {node}");
        compared += 1;
    }
    assert_eq!(compared, summary.num_prototypes_pruned);

    // Exports: SVG without Graphviz, DOT that graphviz-rust parses, JSON with every node.
    for (format, file) in [
        (ExportFormat::Svg, "tree.svg"),
        (ExportFormat::Dot, "tree.dot"),
        (ExportFormat::Json, "tree.json"),
    ] {
        let out = dir.path().join(file);
        let o = export_model_dir(&summary.pruned_model_dir, format, &out, &device)?;
        assert_eq!(o.num_decisions, summary.num_prototypes_pruned);
        let text = std::fs::read_to_string(&out)?;
        match format {
            ExportFormat::Svg => {
                assert!(text.starts_with("<svg") && text.contains("data:image/png"))
            }
            ExportFormat::Dot => {
                graphviz_rust::parse(&text).map_err(anyhow::Error::msg)?;
                assert_eq!(o.patch_images.len(), summary.num_prototypes_pruned);
                assert!(o.patch_images.iter().all(|p| p.is_file()));
            }
            ExportFormat::Json => {
                let v: serde_json::Value = serde_json::from_str(&text)?;
                assert_eq!(v["num_decisions"], summary.num_prototypes_pruned);
            }
        }
    }
    Ok(())
}

#[test]
fn bad_inputs_give_errors_naming_the_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let device = prototree::candle_core::Device::Cpu;
    // Missing data folder.
    let missing = dir.path().join("nope");
    let job = RunConfig {
        data: missing.clone(),
        backbone: BackboneKind::SmallCnn,
        depth: 2,
        proto_dim: 4,
        schedule: TrainConfig {
            epochs: 1,
            ..TrainConfig::default()
        },
        image_size: 32,
        augmentation: prototree::data::Augmentation::None,
        ..RunConfig::default()
    };
    let out = dir.path().join("run");
    let err = train(
        &job,
        &out,
        RunMode::New,
        &device,
        &Interrupter::new(),
        &mut (),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("nope"), "{err}");
    // Missing model directory.
    let err = evaluate_dir(&missing, &missing, 8, &device, &mut ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
    Ok(())
}
