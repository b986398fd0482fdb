//! The report's training section: per epoch the accuracy and the leaf-sharing signature
//! (classes without a leaf of their own, misrouted classes, shared leaves, routing
//! entropy, re-seeded leaves), and the leaves' top classes at the end of training.

use std::fmt::Write as _;

use prototree_tree::leaf_sharing::LeafSharing;
use prototree_tree::{EpochStats, WarmupEpoch};

use crate::svg::escape;

/// At most this many epoch rows; longer runs show evenly spaced epochs and the last.
const MAX_EPOCH_ROWS: usize = 40;

/// Appends the training section for `history`, after the backbone warm-up's epochs
/// `warmup` when there are any (nothing when both are empty).
pub(crate) fn write_training(
    s: &mut String,
    history: &[EpochStats],
    warmup: &[WarmupEpoch],
    class_names: &[String],
) {
    if history.is_empty() && warmup.is_empty() {
        return;
    }
    s.push_str("<h2>Training</h2>\n");
    write_warmup(s, warmup);
    if history.is_empty() {
        return;
    }
    s.push_str("<p>A class that is the majority class of no leaf has no leaf of its own; a misrouted class has fewer than half of its training images end in a leaf it owns. A run that keeps such classes for many epochs has stalled (see docs/training.md); re-seeding gives them spare leaves. Routing H is the mean entropy of an image's distribution over leaves (nats).</p>\n");
    s.push_str("<table><tr><th>epoch</th><th>loss</th><th>train acc</th><th>test acc</th><th>classes without a leaf</th><th>misrouted classes</th><th>shared leaves</th><th>routing H</th><th>re-seeded leaves</th></tr>\n");
    let step = history.len().div_ceil(MAX_EPOCH_ROWS);
    for (i, e) in history.iter().enumerate() {
        if i % step != 0 && i + 1 != history.len() {
            continue;
        }
        let sharing = e.leaf_sharing.as_ref();
        let cell = |v: Option<String>| v.unwrap_or_else(|| "—".to_string());
        let _ = writeln!(
            s,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.1}%</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            e.epoch,
            e.train_loss,
            100.0 * e.train_accuracy,
            cell(e.eval.as_ref().map(|r| format!("{:.1}%", 100.0 * r.accuracy_soft))),
            cell(sharing.map(|l| class_list(&l.classes_without_leaf, class_names))),
            cell(sharing.map(|l| class_list(&l.misrouted_classes, class_names))),
            cell(sharing.map(|l| l.shared_leaves.to_string())),
            cell(sharing.and_then(|l| l.routing_entropy).map(|h| format!("{h:.2}"))),
            reseed_list(&e.leaf_reseeds, class_names),
        );
    }
    s.push_str("</table>\n");
    if let Some(last) = history.iter().rev().find_map(|e| e.leaf_sharing.as_ref()) {
        write_leaves(s, last, class_names);
    }
}

/// The backbone warm-up: one sentence and a row per epoch (nothing without a warm-up).
fn write_warmup(s: &mut String, warmup: &[WarmupEpoch]) {
    let Some(last) = warmup.last() else {
        return;
    };
    let seconds: f64 = warmup.iter().map(|e| e.seconds).sum();
    let _ = writeln!(
        s,
        "<p>Backbone warm-up: before the tree's first epoch the backbone trained for {} epochs as a plain classifier (global average pooling and a temporary linear layer, learning rate {:e}, {:.0} s), reaching {:.1}% training accuracy; the linear layer was then dropped (docs/training.md).</p>",
        warmup.len(),
        last.learning_rate,
        seconds,
        100.0 * last.accuracy
    );
    s.push_str("<table><tr><th>warm-up epoch</th><th>loss</th><th>train acc</th></tr>\n");
    for e in warmup {
        let _ = writeln!(
            s,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.1}%</td></tr>",
            e.epoch,
            e.loss,
            100.0 * e.accuracy
        );
    }
    s.push_str("</table>\n");
}

/// The re-seeded leaves as `leaf N → class`, empty when none.
fn reseed_list(reseeds: &[prototree_tree::LeafReseed], class_names: &[String]) -> String {
    let items: Vec<String> = reseeds
        .iter()
        .map(|r| {
            format!(
                "leaf {} → {}",
                r.leaf,
                escape(&class_name(r.class, class_names))
            )
        })
        .collect();
    items.join(", ")
}

/// The classes `classes` by name, `none` when empty.
fn class_list(classes: &[usize], class_names: &[String]) -> String {
    if classes.is_empty() {
        return "none".to_string();
    }
    let names: Vec<String> = classes
        .iter()
        .map(|&c| escape(&class_name(c, class_names)))
        .collect();
    format!("{} ({})", classes.len(), names.join(", "))
}

fn class_name(c: usize, class_names: &[String]) -> String {
    class_names
        .get(c)
        .cloned()
        .unwrap_or_else(|| format!("class {c}"))
}

/// The leaves' top classes at the end of training; shared leaves first.
fn write_leaves(s: &mut String, sharing: &LeafSharing, class_names: &[String]) {
    s.push_str("<details><summary>Leaves at the end of training (top classes and their probability; shared leaves first)</summary>\n<table><tr><th>leaf</th><th>top classes</th></tr>\n");
    let mut leaves: Vec<_> = sharing.leaves.iter().collect();
    leaves.sort_by_key(|l| l.top.first().is_some_and(|t| t.mass >= 0.5));
    for l in leaves {
        let top: Vec<String> = l
            .top
            .iter()
            .map(|t| {
                format!(
                    "{} {:.0}%",
                    escape(&class_name(t.class, class_names)),
                    100.0 * t.mass
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "<tr><td class=\"num\">{}</td><td>{}</td></tr>",
            l.leaf,
            top.join(", ")
        );
    }
    s.push_str("</table></details>\n");
}
