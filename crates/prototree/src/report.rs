//! The model report: one self-contained HTML page per model (tree diagram with prototype
//! patches, prototype gallery, pruning statistics, accuracies per routing mode, fidelity,
//! links to local explanations).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::attempts::AttemptsLog;
use candle_core::Device;
use prototree_data::Split;
use prototree_interpret::{DecisionTree, PruneReport};
use prototree_learn::{read_warmup_log, MetricsLog, METRICS_FILE, WARMUP_FILE};
use prototree_render::{AccuracyRow, ExplanationLink, GalleryEntry, Report, SvgExport};
use prototree_tree::io::write_atomic;
use prototree_tree::{load_model, EpochStats, NodeId, SavedModel, WarmupEpoch};

use crate::explain::{explain_images, ExplainedImage};
use crate::explanation_metrics::ExplanationMetrics;
use crate::node_gallery::{node_galleries, NodeGallery, GALLERY_PATCHES};
use crate::prototype_picture::{prototype_pictures, PrototypePicture};
use crate::workflow::{eval_loader, evaluate_on, projection_loader, PRUNING_FILE};
use crate::{Error, Result};
use prototree_tree::Observer;

/// What goes into a report besides the model itself.
#[derive(Debug, Clone, Default)]
pub struct ReportContent {
    /// Page title; defaults to the model's directory name.
    pub title: Option<String>,
    /// Accuracy rows (e.g. "trained", "pruned + projected").
    pub accuracies: Vec<AccuracyRow>,
    /// What pruning did, if the model was pruned.
    pub pruning: Option<PruneReport>,
    /// Local explanations to link to.
    pub explanations: Vec<ExplainedImage>,
    /// The explanation metrics of the model, when measured: their table, and per node
    /// the facts on its gallery card (consistency, stability, test purity, whether its
    /// part separates its subtrees).
    pub explanation_metrics: Option<ExplanationMetrics>,
    /// Per decision node, its most similar training patches
    /// ([`node_galleries`](crate::node_gallery::node_galleries)).
    pub galleries: HashMap<NodeId, NodeGallery>,
    /// The training run's epochs (from its `metrics.jsonl`), for the training section.
    pub training: Vec<EpochStats>,
    /// The run's backbone warm-up epochs (from its `warmup.jsonl`; none without one).
    pub warmup: Vec<WarmupEpoch>,
    /// The run's attempts (from its `attempts.json`), when it trained several.
    pub attempts: Option<AttemptsLog>,
}

/// `target` relative to directory `base` when it lies below it, else as given.
fn relative_href(target: &Path, base: &Path) -> String {
    match target.strip_prefix(base) {
        Ok(rel) => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"),
        Err(_) => format!("file://{}", target.display()),
    }
}

/// The model facts table of the report.
fn model_facts(
    saved: &SavedModel,
    tree: &DecisionTree,
    missing: &[String],
) -> Vec<(String, String)> {
    let (meta, topo) = (&saved.meta, saved.model.topology());
    let mut facts = vec![
        ("backbone".to_string(), meta.tree.backbone.to_string()),
        ("depth".to_string(), meta.tree.depth.to_string()),
        (
            "prototype dimension".to_string(),
            meta.tree.proto_dim.to_string(),
        ),
        ("classes".to_string(), meta.class_names.len().to_string()),
        (
            "prototypes (decision nodes)".to_string(),
            topo.num_decisions().to_string(),
        ),
        ("leaves".to_string(), tree.num_leaves().to_string()),
        ("longest path".to_string(), tree.depth().to_string()),
        (
            "input size".to_string(),
            format!("{0}×{0} px", meta.preprocessing.image_size),
        ),
        ("stage".to_string(), saved.stage().to_string()),
        (
            "projected prototypes".to_string(),
            saved.projections().len().to_string(),
        ),
    ];
    if !missing.is_empty() {
        facts.push((
            "prototype source images not found".to_string(),
            missing.join(", "),
        ));
    }
    facts
}

/// The facts row of a run's attempts: the kept one and every attempt's validation
/// accuracy.
fn attempts_fact(log: &AttemptsLog) -> Option<(String, String)> {
    let chosen = log.chosen?;
    let each: Vec<String> = log
        .attempts
        .iter()
        .map(|a| {
            format!(
                "{}{} (seed {}) {:.1}%",
                if a.attempt == chosen { "kept: " } else { "" },
                a.attempt + 1,
                a.seed,
                100.0 * a.validation_accuracy
            )
        })
        .collect();
    Some((
        format!(
            "attempts (validation accuracy on {} held-out training images)",
            log.validation_images
        ),
        each.join(", "),
    ))
}

/// The pruning statistics table of the report.
fn pruning_facts(p: &PruneReport) -> Vec<(String, String)> {
    vec![
        (
            "τ (max leaf probability pruned)".to_string(),
            format!("{}", p.tau),
        ),
        (
            "prototypes before → after".to_string(),
            format!("{} → {}", p.decisions_before, p.decisions_after),
        ),
        (
            "leaves before → after".to_string(),
            format!("{} → {}", p.leaves_before, p.leaves_after),
        ),
        (
            "removed subtrees".to_string(),
            p.removed_subtrees.len().to_string(),
        ),
        (
            "replaced parents".to_string(),
            p.replaced_parents.len().to_string(),
        ),
        (
            "merged decisions (all their leaves predict one class)".to_string(),
            p.merged_decisions.len().to_string(),
        ),
    ]
}

/// The facts on node `node`'s gallery card: the purity of its training patches and, from
/// the explanation metrics, where its source patch lies, its test purity, consistency,
/// stability and whether its part separates its subtrees.
fn card_facts(
    node: NodeId,
    gallery: Option<&NodeGallery>,
    metrics: Option<&ExplanationMetrics>,
) -> Vec<(String, String)> {
    let pct = |v: f64| format!("{:.0}%", 100.0 * v);
    let mut facts = Vec::new();
    if let Some(text) = gallery.and_then(NodeGallery::purity_text) {
        let n = gallery.map_or(0, |g| g.patches.len());
        facts.push((format!("purity, top {n} training patches"), text));
    }
    let Some(m) = metrics else {
        return facts;
    };
    let Some(p) = m.prototypes.iter().find(|p| p.node == node) else {
        return facts;
    };
    let part = |i: Option<usize>| {
        i.and_then(|i| m.part_names.get(i).cloned())
            .unwrap_or_else(|| "no part".to_string())
    };
    if let Some(src) = &p.source {
        facts.push((
            "source patch on".to_string(),
            src.region.label.describe(&m.part_names),
        ));
        if let Some(g) = &src.occlusion_region {
            facts.push((
                "its occlusion box on".to_string(),
                g.label.describe(&m.part_names),
            ));
        }
    }
    if let Some(t) = p.top_k_purity {
        facts.push((
            format!("purity, top {} test patches", m.config.top_k),
            format!("{} ({})", pct(t.share), part(t.part)),
        ));
    }
    if let Some(c) = p.consistency {
        facts.push((
            format!("consistency ({} images on its path)", p.path_images),
            format!(
                "{} ({}){}",
                pct(c.best.share),
                part(c.best.part),
                if c.consistent { " ✓" } else { "" }
            ),
        ));
    }
    if let Some(s) = p.stability {
        facts.push(("stability under noise".to_string(), pct(s)));
    }
    if let Some(c) = p.occlusion_consistency_found {
        facts.push((
            format!(
                "consistency by occlusion box ({} images whose path finds it)",
                p.found_images
            ),
            format!(
                "{} ({}){}",
                pct(c.best.share),
                part(c.best.part),
                if c.consistent { " ✓" } else { "" }
            ),
        ));
    }
    if let (Some(d), Some(sep)) = (p.discriminative, p.separating_parts) {
        let names: Vec<String> = sep.iter().map(|i| part(Some(i))).collect();
        let by_occlusion = match p.occlusion_discriminative {
            Some(true) => ", occlusion box: yes",
            Some(false) => ", occlusion box: no",
            None => "",
        };
        facts.push((
            "separates its subtrees".to_string(),
            format!(
                "{}{by_occlusion} (parts that differ: {})",
                if d { "yes" } else { "no" },
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        ));
    }
    facts
}

/// The prototype gallery: each projected prototype's patch and source, its facts and its
/// most similar training patches, in node order.
fn gallery(
    saved: &SavedModel,
    pictures: &HashMap<NodeId, PrototypePicture>,
    content: &ReportContent,
) -> Vec<GalleryEntry> {
    let mut gallery: Vec<GalleryEntry> = saved
        .projections()
        .iter()
        .filter_map(|r| {
            let pic = pictures.get(&r.node)?;
            let (path, crop) = prototree_data::parse_image_ref(&r.image_path);
            let mut file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(c) = crop {
                file.push_str(&format!(" (its {}×{} box crop)", c.width(), c.height()));
            }
            let node_gallery = content.galleries.get(&r.node);
            Some(GalleryEntry {
                node: r.node.to_string(),
                patch_png: pic.patch_png.clone(),
                boxed_png: pic.boxed_png.clone(),
                caption: format!(
                    "from {file}, patch ({}, {}) of {}×{}, distance before projection {:.3}",
                    r.patch_row, r.patch_col, r.fmap_height, r.fmap_width, r.distance
                ),
                facts: card_facts(r.node, node_gallery, content.explanation_metrics.as_ref()),
                top_patches: node_gallery.map(|g| g.patches.clone()).unwrap_or_default(),
            })
        })
        .collect();
    gallery.sort_by_key(|g| g.node.parse::<u32>().unwrap_or(u32::MAX));
    gallery
}

/// Links to the explained images, relative to `base`, captioned with the prediction.
fn explanation_links(
    explained: &[ExplainedImage],
    class_names: &[String],
    base: &Path,
) -> Vec<ExplanationLink> {
    explained
        .iter()
        .map(|e| {
            let file = e
                .image
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let truth = match e.true_class {
                Some(t) if t == e.class_index => " ✓".to_string(),
                Some(t) => format!(
                    " ✗ (true: {})",
                    class_names.get(t).cloned().unwrap_or_default()
                ),
                None => String::new(),
            };
            ExplanationLink {
                href: relative_href(&e.page, base),
                thumbnail_png: e.thumbnail_png.clone(),
                caption: format!("{file}: {}{truth}", e.class_name),
            }
        })
        .collect()
}

/// Builds the report page of `saved`, with links relative to `html_path`'s directory.
pub fn build_report(
    saved: &SavedModel,
    content: &ReportContent,
    html_path: &Path,
) -> Result<Report> {
    let class_names = &saved.meta.class_names;
    let tree = DecisionTree::from_model(&saved.model, saved.projections(), class_names)?;
    let (pictures, missing) = prototype_pictures(saved)?;
    let patches: HashMap<NodeId, Vec<u8>> = pictures
        .iter()
        .map(|(k, v)| (*k, v.patch_png.clone()))
        .collect();
    let title = content
        .title
        .clone()
        .unwrap_or_else(|| "ProtoTree model".to_string());
    let base = html_path.parent().unwrap_or(Path::new("."));
    Ok(Report {
        title,
        facts: {
            let mut f = model_facts(saved, &tree, &missing);
            f.extend(content.attempts.as_ref().and_then(attempts_fact));
            f
        },
        accuracies: content.accuracies.clone(),
        pruning: content
            .pruning
            .as_ref()
            .map(pruning_facts)
            .unwrap_or_default(),
        explanation_metrics: content
            .explanation_metrics
            .as_ref()
            .map(ExplanationMetrics::report_rows)
            .unwrap_or_default(),
        tree_svg: SvgExport::new(&tree)
            .with_patches(&patches)
            .with_node_links()
            .to_string(),
        gallery: gallery(saved, &pictures, content),
        explanations: explanation_links(&content.explanations, class_names, base),
        training: content.training.clone(),
        warmup: content.warmup.clone(),
        class_names: class_names.clone(),
    })
}

/// Builds and writes the report (atomically) to `html_path`.
pub fn write_report(saved: &SavedModel, content: &ReportContent, html_path: &Path) -> Result<()> {
    let report = build_report(saved, content, html_path)?;
    write_atomic(html_path, report.to_string().as_bytes())?;
    Ok(())
}

/// Reads the pruning statistics saved next to a pruned model, if any.
pub fn read_pruning(model_dir: &Path) -> Option<PruneReport> {
    let bytes = std::fs::read(model_dir.join(PRUNING_FILE)).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    serde_json::from_value(value.get("report")?.clone()).ok()
}

/// What a report adds when it is given a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    /// Test images explained and linked (0: none).
    pub explain: usize,
    /// Most similar training patches per gallery card (0: no pass over the training
    /// split, cards without them).
    pub gallery_patches: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            explain: 8,
            gallery_patches: GALLERY_PATCHES,
        }
    }
}

/// Writes the report of the model in `model_dir` to `html_path`. With `data` (a
/// CUB-layout data set), the test split is evaluated, the first `opts.explain` test
/// images are explained under `explanations/` next to the page and each gallery card gets
/// its `opts.gallery_patches` most similar training patches.
pub fn report_model_dir(
    model_dir: &Path,
    data: Option<&Path>,
    html_path: &Path,
    opts: &ReportOptions,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<PathBuf> {
    let saved = load_model(model_dir, device)?;
    report_model(&saved, model_dir, data, html_path, opts, obs)
}

/// [`report_model_dir`] of a loaded model whose directory is `model_dir` (for its title
/// and pruning statistics), on the model's device.
pub fn report_model(
    saved: &SavedModel,
    model_dir: &Path,
    data: Option<&Path>,
    html_path: &Path,
    opts: &ReportOptions,
    obs: &mut dyn Observer,
) -> Result<PathBuf> {
    let explain = opts.explain;
    let device = saved.model.device().clone();
    let device = &device;
    let mut content = ReportContent {
        title: Some(format!("ProtoTree model {}", model_dir.display())),
        pruning: read_pruning(model_dir),
        training: MetricsLog::new(model_dir.join(METRICS_FILE))
            .read()
            .unwrap_or_default(),
        warmup: read_warmup_log(&model_dir.join(WARMUP_FILE)).unwrap_or_default(),
        attempts: AttemptsLog::read(model_dir).ok().flatten(),
        ..Default::default()
    };
    if let Some(data) = data {
        let (_, test) = eval_loader(data, Split::Test, &saved.meta, 64, obs)?;
        let eval = evaluate_on(&saved.model, &test, device, obs)?;
        content.accuracies.push(AccuracyRow {
            label: saved.stage().to_string(),
            eval,
        });
        if opts.gallery_patches > 0 {
            let (_, train) = projection_loader(data, &saved.meta, 64, obs)?;
            content.galleries =
                node_galleries(saved, data, &train, opts.gallery_patches, device, obs)?;
        }
        if explain > 0 {
            let samples = spread_samples(test.samples().len(), explain);
            let images: Vec<PathBuf> = samples
                .iter()
                .map(|&i| test.samples()[i].path.clone())
                .collect();
            let truth: Vec<usize> = samples
                .iter()
                .map(|&i| test.samples()[i].class_index)
                .collect();
            let dir = html_path
                .parent()
                .unwrap_or(Path::new("."))
                .join("explanations");
            content.explanations = explain_images(saved, &images, Some(&truth), &dir, obs)?;
        }
    }
    if let Some(parent) = html_path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
    }
    write_report(saved, &content, html_path)?;
    Ok(html_path.to_path_buf())
}

/// `k` indices spread evenly over `0..n` (all of them when `k ≥ n`).
pub fn spread_samples(n: usize, k: usize) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    (0..k).map(|i| i * n / k).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempts::AttemptRecord;

    #[test]
    fn the_attempts_row_names_the_kept_attempt() {
        let record = |attempt: usize, validation_accuracy: f64| AttemptRecord {
            attempt,
            seed: 5 + attempt as u64,
            validation_accuracy,
            final_train_accuracy: 1.0,
            train_seconds: 1.0,
        };
        let mut log = AttemptsLog {
            validation_images: 72,
            attempts: vec![record(0, 0.875), record(1, 0.9861)],
            chosen: None,
        };
        // Not chosen yet (an interrupted run): no row.
        assert_eq!(attempts_fact(&log), None);
        log.chosen = Some(1);
        let (label, value) = attempts_fact(&log).unwrap_or_default();
        assert!(label.contains("72 held-out"), "{label}");
        assert_eq!(value, "1 (seed 5) 87.5%, kept: 2 (seed 6) 98.6%");
    }
}
