//! The model report: one self-contained HTML page (no external files, scripts or fonts)
//! with the tree diagram, the prototype gallery, pruning statistics, accuracies per
//! routing mode, fidelity and links to local explanations.
//!
//! The caller gathers the content into a [`Report`]; `Display` renders the page.

use std::fmt::{self, Write as _};

use prototree_tree::{EpochStats, EvalReport, WarmupEpoch};

use crate::gallery::{write_gallery, write_tree_viewer, GALLERY_STYLE, VIEWER_SCRIPT};
pub use crate::gallery::{GalleryEntry, GalleryPatch};
use crate::svg::{escape, png_data_uri};

/// Accuracies of one model state (e.g. "trained", "pruned + projected").
#[derive(Debug, Clone)]
pub struct AccuracyRow {
    /// The state's label.
    pub label: String,
    /// Its evaluation.
    pub eval: EvalReport,
}

/// A link to a local explanation.
#[derive(Debug, Clone)]
pub struct ExplanationLink {
    /// Relative URL of the explanation page.
    pub href: String,
    /// A small picture of the explained image (PNG bytes).
    pub thumbnail_png: Vec<u8>,
    /// A caption (file name, prediction, truth).
    pub caption: String,
}

/// Everything the report page shows.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Page title.
    pub title: String,
    /// Key facts (architecture, classes, prototypes, ...), in display order.
    pub facts: Vec<(String, String)>,
    /// Accuracy table rows.
    pub accuracies: Vec<AccuracyRow>,
    /// Pruning statistics, in display order.
    pub pruning: Vec<(String, String)>,
    /// Explanation quality metrics (label, value), in display order; the section is left
    /// out when empty.
    pub explanation_metrics: Vec<(String, String)>,
    /// The tree diagram (an SVG document).
    pub tree_svg: String,
    /// The prototype gallery.
    pub gallery: Vec<GalleryEntry>,
    /// Links to local explanations.
    pub explanations: Vec<ExplanationLink>,
    /// The training run's epochs (the section is left out when empty).
    pub training: Vec<EpochStats>,
    /// The backbone warm-up's epochs before them (none when the run had no warm-up).
    pub warmup: Vec<WarmupEpoch>,
    /// Class names, for the training section.
    pub class_names: Vec<String>,
}

const STYLE: &str =
    "body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}\
h1{font-size:24px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}\
table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #eee;text-align:left}\
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}";

fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

fn table(s: &mut String, rows: &[(String, String)]) {
    s.push_str("<table>\n");
    for (k, v) in rows {
        let _ = writeln!(s, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
    s.push_str("</table>\n");
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}{GALLERY_STYLE}</style></head><body>",
            escape(&self.title)
        );
        let _ = writeln!(s, "<h1>{}</h1>", escape(&self.title));
        table(&mut s, &self.facts);
        if !self.accuracies.is_empty() {
            s.push_str("<h2>Accuracy and fidelity (test split)</h2>\n<table><tr><th>model</th><th>images</th><th>soft</th><th>greedy</th><th>max-leaf</th><th>fidelity greedy</th><th>fidelity max-leaf</th><th>mean path length</th></tr>\n");
            for row in &self.accuracies {
                let e = &row.eval;
                let _ = writeln!(
                    s,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.2}</td></tr>",
                    escape(&row.label),
                    e.num_images,
                    pct(e.accuracy_soft),
                    pct(e.accuracy_greedy),
                    pct(e.accuracy_max_leaf),
                    pct(e.fidelity_greedy),
                    pct(e.fidelity_max_leaf),
                    e.mean_path_length
                );
            }
            s.push_str("</table>\n");
        }
        if !self.pruning.is_empty() {
            s.push_str("<h2>Pruning</h2>\n");
            table(&mut s, &self.pruning);
        }
        if !self.explanation_metrics.is_empty() {
            s.push_str("<h2>Explanation quality</h2>\n<p>Measured against the data set's part annotations (see docs/explanations.md): where prototypes sit, whether they activate on the same part across images and under noise, and whether decisions depend on the patches shown.</p>\n");
            table(&mut s, &self.explanation_metrics);
        }
        s.push_str("<h2>The tree</h2>\n<p>Each decision asks whether the image contains a patch like the prototype shown; the right branch is \"present\" (similarity &gt; 0.5), the left \"absent\". Leaves show their top classes.</p>\n");
        write_tree_viewer(&mut s, &self.tree_svg);
        if !self.gallery.is_empty() {
            s.push_str("<h2>Prototypes</h2>\n<p>Each prototype is a patch of a training image (projection); left: the patch, right: where it lies in its image. The cyan box is the latent patch's region; the orange box, of the same size, is where the match depends on the pixels most (occluding it lowers the similarity most; a latent patch sees more than its box), and the enlarged patch is cut from it. Below: the training patches most similar to it, one per image, each cut from the box its match depends on (hover for class and part), and, with part annotations, its purity and whether its part tells its two subtrees apart.</p>\n");
            write_gallery(&mut s, &self.gallery);
        }
        if !self.explanations.is_empty() {
            s.push_str("<h2>Local explanations</h2>\n<div class=\"gallery\">\n");
            for e in &self.explanations {
                let _ = writeln!(
                    s,
                    "<div class=\"card\"><a href=\"{href}\"><img src=\"{}\" width=\"96\" alt=\"explained image\"></a><br><a href=\"{href}\">{}</a></div>",
                    png_data_uri(&e.thumbnail_png),
                    escape(&e.caption),
                    href = escape(&e.href),
                );
            }
            s.push_str("</div>\n");
        }
        crate::training_section::write_training(
            &mut s,
            &self.training,
            &self.warmup,
            &self.class_names,
        );
        s.push_str(VIEWER_SCRIPT);
        s.push_str("</body></html>\n");
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained_and_escaped() {
        let report = Report {
            title: "Tree <1>".into(),
            facts: vec![("classes".into(), "12".into())],
            accuracies: vec![AccuracyRow {
                label: "pruned".into(),
                eval: EvalReport {
                    num_images: 10,
                    accuracy_soft: 0.95,
                    ..Default::default()
                },
            }],
            pruning: vec![("removed".into(), "3".into())],
            explanation_metrics: vec![("prototypes on a part".into(), "50.0%".into())],
            tree_svg: "<?xml version=\"1.0\"?><svg></svg>".into(),
            gallery: vec![GalleryEntry {
                node: "0".into(),
                patch_png: vec![1, 2, 3],
                boxed_png: vec![4],
                caption: "a & b".into(),
                ..Default::default()
            }],
            explanations: vec![ExplanationLink {
                href: "explanations/x/index.html".into(),
                thumbnail_png: vec![5],
                caption: "x".into(),
            }],
            training: Vec::new(),
            warmup: Vec::new(),
            class_names: Vec::new(),
        };
        let html = report.to_string();
        assert!(html.contains("<title>Tree &lt;1&gt;</title>"));
        assert!(html.contains("95.0%"));
        assert!(html.contains("<svg></svg>") && !html.contains("<?xml"));
        assert!(html.contains("data:image/png;base64,AQID"));
        assert!(html.contains("a &amp; b"));
        assert!(html.contains("href=\"explanations/x/index.html\""));
        assert!(!html.contains("src=\"http"));
        assert!(html.contains("<h2>Explanation quality</h2>"));
        assert!(html.contains("<th>prototypes on a part</th><td>50.0%</td>"));
        // No metrics, no section.
        let plain = Report {
            explanation_metrics: Vec::new(),
            ..report
        };
        assert!(!plain.to_string().contains("Explanation quality"));
        assert!(!plain.to_string().contains("<h2>Training</h2>"));
    }

    #[test]
    fn training_section_names_the_classes_without_a_leaf() -> anyhow::Result<()> {
        use prototree_tree::leaf_sharing::{ClassMass, LeafClasses, LeafSharing};
        let epoch = |epoch: usize, leafless: Vec<usize>| EpochStats {
            epoch,
            train_loss: 1.0,
            train_accuracy: 0.5,
            eval: None,
            learning_rates: [0.0; 3],
            backbone_frozen: false,
            seconds: 1.0,
            leaf_sharing: Some(LeafSharing {
                leaves: vec![
                    LeafClasses {
                        leaf: 0,
                        top: vec![ClassMass {
                            class: 0,
                            mass: 0.9,
                        }],
                    },
                    LeafClasses {
                        leaf: 1,
                        top: vec![
                            ClassMass {
                                class: 1,
                                mass: 0.48,
                            },
                            ClassMass {
                                class: 2,
                                mass: 0.47,
                            },
                        ],
                    },
                ],
                classes_without_leaf: leafless,
                shared_leaves: 1,
                misrouted_classes: vec![0],
                routing_entropy: Some(0.25),
            }),
            leaf_reseeds: vec![prototree_tree::LeafReseed {
                leaf: 1,
                class: 2,
                previous_class: Some(0),
                from_leaf: None,
                rerouted_nodes: Vec::new(),
            }],
        };
        let report = Report {
            training: (1..=100).map(|e| epoch(e, vec![1, 2])).collect(),
            class_names: vec!["a".into(), "b<".into(), "c".into()],
            ..Report::default()
        };
        let html = report.to_string();
        assert!(html.contains("<h2>Training</h2>"));
        assert!(html.contains("2 (b&lt;, c)"), "{html}");
        assert!(html.contains("<td>1 (a)</td>"), "{html}");
        assert!(html.contains("leaf 1 → c"), "{html}");
        // 100 epochs: every third row (epochs 1, 4, …, 100: the last is one of them),
        // then the two leaves.
        assert_eq!(html.matches("<tr><td class=\"num\">").count(), 34 + 2);
        // The shared leaf is listed first.
        let shared = html
            .find("b&lt; 48%, c 47%")
            .ok_or_else(|| anyhow::anyhow!("no leaf row"))?;
        let owned = html
            .find("a 90%")
            .ok_or_else(|| anyhow::anyhow!("no leaf row"))?;
        assert!(shared < owned);
        Ok(())
    }

    #[test]
    fn training_section_shows_the_backbone_warm_up() {
        let warm = |epoch: usize, accuracy: f64| WarmupEpoch {
            epoch,
            num_epochs: 2,
            loss: 1.0 / epoch as f64,
            accuracy,
            learning_rate: 2e-3,
            seconds: 1.5,
        };
        let report = Report {
            warmup: vec![warm(1, 0.5), warm(2, 0.875)],
            ..Report::default()
        };
        let html = report.to_string();
        assert!(html.contains("<h2>Training</h2>"), "{html}");
        assert!(html.contains("for 2 epochs"), "{html}");
        assert!(html.contains("reaching 87.5% training accuracy"), "{html}");
        assert!(html.contains("<th>warm-up epoch</th>"), "{html}");
        assert_eq!(html.matches("<tr><td class=\"num\">").count(), 2);
        assert!(!Report::default().to_string().contains("warm-up"));
    }
}
