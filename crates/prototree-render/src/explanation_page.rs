//! The HTML page of one local explanation: the image, then per decision on its greedy path
//! the prototype, the image's most similar patch, its box, the similarity heatmap and the
//! decision taken, then the reached leaf's class distribution. Self-contained (images are
//! embedded as data URIs).

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use image::RgbImage;
use prototree_tree::topology::NodeId;

use prototree_interpret::LocalExplanation;

use crate::explanation_images::explanation_images;
use crate::svg::{escape, png_data_uri};
use crate::visualize::{png_bytes, upscale};

/// A renderable explanation page.
#[derive(Debug, Clone)]
pub struct ExplanationPage<'a> {
    /// Title (usually the image's file name).
    pub title: String,
    /// The image as the model saw it.
    pub image: &'a RgbImage,
    /// The explanation.
    pub explanation: &'a LocalExplanation,
    /// Class names, index = class id.
    pub class_names: &'a [String],
    /// The true class, when known.
    pub true_class: Option<usize>,
    /// Prototype patch pictures (PNG bytes) per decision node.
    pub prototype_patches: &'a HashMap<NodeId, Vec<u8>>,
}

const STYLE: &str = "body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222}\
table{border-collapse:collapse}td,th{padding:6px 10px;border-bottom:1px solid #eee;text-align:center;vertical-align:middle}\
img{image-rendering:pixelated}.present{color:#0a7d2c;font-weight:bold}.absent{color:#a33;font-weight:bold}\
.bar{display:inline-block;height:10px;background:#4a78c2;vertical-align:middle}";

fn name(names: &[String], k: usize) -> String {
    names
        .get(k)
        .cloned()
        .unwrap_or_else(|| format!("class {k}"))
}

/// Display width for an image so small inputs are shown large enough to read.
fn shown_width(img: &RgbImage) -> u32 {
    img.width().max(1) * (160 / img.width().max(1)).max(1)
}

impl fmt::Display for ExplanationPage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.explanation;
        let pics = explanation_images(self.image, e);
        let w = shown_width(self.image);
        let factor = (w / self.image.width().max(1)).max(1);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
            escape(&self.title)
        );
        let _ = writeln!(s, "<h1>{}</h1>", escape(&self.title));
        let predicted = name(self.class_names, e.class_index);
        let _ = write!(
            s,
            "<p><img src=\"{}\" width=\"{w}\" alt=\"input\"></p><p>Prediction: <b>{}</b>",
            png_data_uri(&png_bytes(&upscale(self.image, factor))),
            escape(&predicted)
        );
        if let Some(t) = self.true_class {
            let verdict = if t == e.class_index {
                "correct"
            } else {
                "wrong"
            };
            let _ = write!(
                s,
                " — true class: {} ({verdict})",
                escape(&name(self.class_names, t))
            );
        }
        let plural = if e.steps.len() == 1 { "" } else { "s" };
        let _ = writeln!(
            s,
            " — {} decision{plural} on the greedy path, leaf {}.</p>",
            e.steps.len(),
            e.leaf
        );
        if e.steps.iter().any(|st| st.occlusion_box.is_some()) {
            s.push_str("<p>Where: the cyan box is the most similar latent patch's region; the orange box, of the same size, is the one whose occlusion (filled with the mean colour) lowers the similarity the most, which can differ because a latent patch sees more than its box. The enlarged patches are cut from the orange boxes, on the image and on the prototype's source.</p>\n");
        }
        s.push_str("<table><tr><th>node</th><th>prototype</th><th>most similar patch</th><th>where</th><th>similarity map</th><th>decision</th></tr>\n");
        for (step, pic) in e.steps.iter().zip(&pics) {
            let proto = match self.prototype_patches.get(&step.node) {
                Some(png) => format!(
                    "<img src=\"{}\" width=\"96\" alt=\"prototype\">",
                    png_data_uri(png)
                ),
                None => "(not projected)".to_string(),
            };
            let (cls, verdict) = if step.present {
                ("present", "present → right")
            } else {
                ("absent", "absent → left")
            };
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{proto}</td><td><img src=\"{}\" width=\"96\" alt=\"patch\"></td><td><img src=\"{}\" width=\"{w}\" alt=\"box\"></td><td><img src=\"{}\" width=\"{w}\" alt=\"heatmap\"></td><td><span class=\"{cls}\">{verdict}</span><br>similarity {:.4}</td></tr>",
                step.node,
                png_data_uri(&png_bytes(&pic.patch)),
                png_data_uri(&png_bytes(&upscale(&pic.boxed, factor))),
                png_data_uri(&png_bytes(&upscale(&pic.heatmap, factor))),
                step.similarity
            );
        }
        s.push_str("</table>\n<h2>Class distribution of the reached leaf</h2>\n<table>\n");
        let mut order: Vec<usize> = (0..e.probabilities.len()).collect();
        order.sort_by(|a, b| e.probabilities[*b].total_cmp(&e.probabilities[*a]));
        for k in order.into_iter().take(10) {
            let p = e.probabilities[k];
            let _ = writeln!(
                s,
                "<tr><td style=\"text-align:left\">{}</td><td><span class=\"bar\" style=\"width:{:.0}px\"></span></td><td>{:.3}</td></tr>",
                escape(&name(self.class_names, k)),
                (200.0 * p).max(1.0),
                p
            );
        }
        s.push_str("</table>\n</body></html>\n");
        f.write_str(&s)
    }
}
