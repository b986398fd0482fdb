//! End to end on a tiny synthetic bird set: generate, build a tree, project its
//! prototypes onto training patches, save, reload, measure.

use std::path::Path;

use candle_core::{Device, Tensor};
use prototree_backbone::BackboneKind;
use prototree_data::{
    generate, Augmentation, CubDataset, Loader, LoaderConfig, Normalization, Split, SynthConfig,
};
use prototree_metrics::{
    explanation_metrics, explanation_metrics_with, ExplanationMetrics, MetricsConfig, Phase,
};
use prototree_tree::io::{ModelMeta, Preprocessing, FORMAT_VERSION};
use prototree_tree::{
    load_model, save_model, Batch, BatchSource, Event, Leaves, Observer, ProtoTree, Stage,
    TreeConfig,
};

/// Records the messages and the stages that start and finish.
#[derive(Default)]
struct Recorder {
    messages: Vec<String>,
    started: Vec<Stage>,
    finished: Vec<Stage>,
}

impl Observer for Recorder {
    fn on_event(&mut self, event: &Event<'_>) {
        match event {
            Event::Message(text) => self.messages.push(text.to_string()),
            Event::StageStarted { stage, .. } => self.started.push(*stage),
            Event::StageFinished(stage) => self.finished.push(*stage),
            _ => {}
        }
    }
}

/// Unshuffled batches of a loader, for projection.
struct Batches<'a>(&'a Loader);

impl BatchSource for Batches<'_> {
    fn num_batches(&self) -> usize {
        self.0.num_batches()
    }
    fn batches(
        &mut self,
        _epoch: usize,
    ) -> Box<dyn Iterator<Item = prototree_tree::Result<Batch>> + '_> {
        Box::new(self.0.epoch(0).map(|b| {
            Ok(Batch {
                images: Tensor::from_vec(
                    b.images,
                    (b.batch_size, 3, b.height, b.width),
                    &Device::Cpu,
                )?,
                labels: Tensor::from_vec(b.labels, b.batch_size, &Device::Cpu)?,
            })
        }))
    }
}

/// Generates the data into `data` (birds of `parts` parts), projects a depth-2 tree onto it
/// and saves it in `model`.
fn build(data: &Path, model_dir: &Path, parts: usize) -> anyhow::Result<()> {
    generate(
        &SynthConfig {
            classes: 4,
            per_class: 10,
            size: 32,
            seed: 5,
            train_fraction: 0.5,
            parts,
            ..Default::default()
        },
        data,
        &mut |_, _| {},
    )?;
    let cfg = TreeConfig {
        backbone: BackboneKind::SmallCnn,
        depth: 2,
        proto_dim: 8,
        num_classes: 4,
    }
    .check()?;
    let mut model = ProtoTree::new(&cfg, &Device::Cpu, 3)?;
    // Leaf j predicts class j.
    let leaves: Vec<f32> = (0..16)
        .map(|i| if i % 5 == 0 { 5.0 } else { 0.0 })
        .collect();
    model.set_leaves(Leaves::from_params(Tensor::from_vec(
        leaves,
        (4, 4),
        &Device::Cpu,
    )?)?)?;
    let ds = CubDataset::open(data)?;
    let norm = Normalization::IMAGENET;
    let loader = Loader::new(
        ds.samples(Split::Train),
        LoaderConfig {
            batch_size: 8,
            image_size: 32,
            crop_to_bbox: false,
            augmentation: Augmentation::None,
            normalization: norm,
            shuffle: false,
            drop_last: false,
        },
        &mut |_, _| {},
    )?;
    let paths: Vec<String> = loader
        .samples()
        .iter()
        .map(|s| s.path.display().to_string())
        .collect();
    let records =
        prototree_interpret::project(&mut model, &mut Batches(&loader), &paths, &mut |_, _| {})?;
    assert_eq!(records.len(), 3);
    let meta = ModelMeta {
        format_version: FORMAT_VERSION,
        tree: cfg.config().clone(),
        class_names: ds.class_names().to_vec(),
        preprocessing: Preprocessing {
            image_size: 32,
            mean: norm.mean,
            std: norm.std,
        },
        train: None,
    };
    save_model(model_dir, &model, &meta, &records)?;
    Ok(())
}

fn check_ranges(m: &ExplanationMetrics) {
    assert!((0.0..=1.0).contains(&m.object_area_share));
    for (key, v) in m.headline() {
        assert!((0.0..=1.0).contains(&v), "{key} = {v} is not a fraction");
    }
    for p in &m.prototypes {
        for v in [
            p.stability,
            p.stability_present,
            p.occlusion_stability,
            p.stability_found,
            p.occlusion_stability_found,
            p.object_energy,
            p.part_energy,
            p.pointing_game,
            p.object_area_share,
            p.part_area_share,
            p.smoothgrad_object_energy,
            p.smoothgrad_part_energy,
            p.smoothgrad_pointing_game,
            p.integrated_gradients_object_energy,
            p.integrated_gradients_part_energy,
            p.integrated_gradients_pointing_game,
        ]
        .into_iter()
        .flatten()
        {
            assert!((0.0..=1.0).contains(&v), "node {}: {v}", p.node);
        }
    }
}

#[test]
fn tiny_synthetic_model_gives_fractions_in_range() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (data, model_dir) = (dir.path().join("data"), dir.path().join("model"));
    build(&data, &model_dir, 5)?;
    let saved = load_model(&model_dir, &Device::Cpu)?;
    let mut events = Recorder::default();
    let m = explanation_metrics(&saved, &data, &Device::Cpu, &mut events)?;
    check_ranges(&m);
    // SmoothGrad runs by default; with the part-labelled mask, some of its energy lies
    // on the object.
    assert!(m
        .prototypes
        .iter()
        .all(|p| p.smoothgrad_object_energy.is_some()));
    assert!(m.explanation_smoothgrad_object_energy > 0.0);
    // So do integrated gradients.
    assert!(m
        .prototypes
        .iter()
        .all(|p| p.integrated_gradients_object_energy.is_some()));
    assert!(m.explanation_integrated_gradients_object_energy > 0.0);
    let phases = [
        Phase::LoadImages,
        Phase::Activations,
        Phase::Noise,
        Phase::OcclusionBoxes,
        Phase::Deletion,
        Phase::Perturbation,
    ];
    let expected: Vec<String> = phases
        .iter()
        .map(|p| format!("explanation metrics: {}", p.label()))
        .collect();
    assert_eq!(events.messages, expected);
    // Each phase's stage starts and finishes once, in order.
    let stages: Vec<Stage> = phases.iter().map(|p| p.stage()).collect();
    assert_eq!(events.started, stages);
    assert_eq!(events.finished, stages);
    assert_eq!(m.num_test_images, 20);
    assert_eq!(m.num_prototypes, 3);
    assert_eq!(m.part_source, "mask");
    assert_eq!(m.part_names, ["crest", "beak", "eye", "wing", "tail"]);
    // Every projected prototype is located (the masks cover every image), and the
    // variant table of synth.json evaluates every decision node.
    assert_eq!(m.num_located, 3);
    assert_eq!(m.num_discriminative_evaluated, 3);
    assert!(m.prototypes.iter().all(|p| p.separating_parts.is_some()));
    // The root serves all four classes, its children two each.
    assert_eq!(m.prototypes[0].served_classes, [0, 1, 2, 3]);
    assert_eq!(m.prototypes[0].present_classes, [2, 3]);
    assert_eq!(m.prototypes[0].present_images, 10);
    // Every test image's path starts at the root; the occlusion boxes give figures too,
    // and every located source has an occlusion box of its patch box's size.
    assert_eq!(m.prototypes[0].path_images, 20);
    for p in &m.prototypes {
        // Prototypes on no test image's path have no images to measure.
        assert_eq!(p.occlusion_stability.is_some(), p.path_images > 0);
        assert_eq!(p.stability.is_some(), p.path_images > 0);
        // The images whose path finds the prototype are some of its path images.
        assert!(p.found_images <= p.path_images);
        assert_eq!(p.stability_found.is_some(), p.found_images > 0);
        assert_eq!(p.occlusion_stability_found.is_some(), p.found_images > 0);
    }
    // Every path passes the root and answers it "present" exactly where its prototype
    // fires (similarity > 0.5).
    assert_eq!(m.prototypes[0].found_images, m.prototypes[0].firing_images);
    // Occluding a source's box changes its similarity by at most 1 either way.
    for s in m.prototypes.iter().filter_map(|p| p.source.as_ref()) {
        for d in [s.patch_box_drop, s.occlusion_box_drop] {
            let d = d.ok_or_else(|| anyhow::anyhow!("no occlusion drop"))?;
            assert!((-1.0..=1.0).contains(&d), "{d}");
        }
    }
    for s in m.prototypes.iter().filter_map(|p| p.source.as_ref()) {
        let g = s
            .occlusion_box
            .ok_or_else(|| anyhow::anyhow!("no occlusion box"))?;
        let b = s.image_box;
        assert_eq!((g[2] - g[0], g[3] - g[1]), (b[2] - b[0], b[3] - b[1]));
    }
    // Top-k activations: 10 images per prototype, 3 perturbations × 2 areas each.
    assert!(m.perturbation.iter().all(|p| p.images == 30));
    let json = serde_json::to_value(&m)?;
    for key in [
        "explanation_on_part",
        "explanation_consistency",
        "explanation_stability",
        "explanation_discriminative_share",
    ] {
        assert!(json[key].is_number(), "{key} missing from the JSON");
    }
    // Deterministic: the same numbers again.
    let again = explanation_metrics(&saved, &data, &Device::Cpu, &mut ())?;
    assert_eq!(m, again);
    assert!(!m.report_rows().is_empty());

    // Asked for, the regions' parts come from the keypoints though the masks carry
    // parts; the part masks still give the energy on the part.
    let keypoint_rule = MetricsConfig {
        parts_from_keypoints: true,
        ..Default::default()
    };
    let kp = explanation_metrics_with(&saved, &data, &keypoint_rule, &Device::Cpu, &mut ())?;
    check_ranges(&kp);
    assert_eq!(kp.part_source, "keypoints");
    assert!(kp.prototypes.iter().any(|p| p.part_energy.is_some()));
    assert_eq!(kp.num_test_images, m.num_test_images);
    // Without part_locs.txt the keypoint rule is refused, naming the file.
    let locs = data.join("parts").join("part_locs.txt");
    let kept = std::fs::read(&locs)?;
    std::fs::remove_file(&locs)?;
    let err = explanation_metrics_with(&saved, &data, &keypoint_rule, &Device::Cpu, &mut ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("part_locs.txt"), "{err}");
    std::fs::write(&locs, kept)?;

    // Without the part-labelled mask, parts come from part_locs.txt keypoints.
    std::fs::remove_file(data.join("segmentations").join("labels.txt"))?;
    let k = explanation_metrics(&saved, &data, &Device::Cpu, &mut ())?;
    check_ranges(&k);
    assert_eq!(k.part_source, "keypoints");
    // Without any part annotation the metrics refuse to run.
    std::fs::remove_file(data.join("parts").join("part_locs.txt"))?;
    let err = explanation_metrics(&saved, &data, &Device::Cpu, &mut ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no part annotations"), "{err}");
    Ok(())
}

#[test]
fn birds_with_seven_parts_are_measured_like_five_part_ones() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (data, model_dir) = (dir.path().join("data"), dir.path().join("model"));
    build(&data, &model_dir, 7)?;
    let saved = load_model(&model_dir, &Device::Cpu)?;
    let m = explanation_metrics(&saved, &data, &Device::Cpu, &mut Recorder::default())?;
    check_ranges(&m);
    // The variant table has seven parts (indices 0..7): the nodes' separating parts are
    // known, and the breast or the legs (indices 5, 6) are among them.
    assert!(m.num_discriminative_evaluated > 0);
    let separating: Vec<usize> = m
        .prototypes
        .iter()
        .filter_map(|p| p.separating_parts)
        .flat_map(Vec::<usize>::from)
        .collect();
    assert!(!separating.is_empty());
    assert!(separating.iter().all(|&p| p < 7), "{separating:?}");
    assert!(separating.iter().any(|&p| p >= 5), "{separating:?}");
    Ok(())
}
