//! Local explanations of image files, written as one self-contained HTML page and one JSON
//! file per image, plus the pictures of the model's projected prototypes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use prototree_interpret::{explain_latent, LocalExplanation};
use prototree_metrics::input_gradients::best_window;
use prototree_metrics::occlusion_box::{occlusion_maps, Occluder};
use prototree_render::visualize::png_bytes;
use prototree_render::ExplanationPage;
use prototree_tree::io::write_atomic;
use prototree_tree::{NodeId, SavedModel};
use serde::Serialize;

use crate::predict::model_input;
use crate::prototype_picture::prototype_pictures;
use crate::{Error, Result};
use prototree_tree::{Observer, Stage};

/// Occluded copies per forward pass.
const OCCLUSION_BATCH: usize = 64;

/// Sets each step's occlusion box (docs/explanations.md): the window of the patch box's
/// size whose occlusion lowers that step's similarity the most on the explained image,
/// the best window of the image's occlusion map (as the explanation metrics place it).
/// `batch` holds the normalised `(b, 3, size, size)` inputs of `explanations`; one batch
/// of occluded copies per image serves every step of its path.
fn add_occlusion_boxes(
    model: &prototree_tree::ProtoTree,
    batch: &candle_core::Tensor,
    size: usize,
    explanations: &mut [LocalExplanation],
) -> Result<()> {
    if explanations.is_empty() {
        return Ok(());
    }
    let chw = batch.flatten_all()?.to_vec1::<f32>()?;
    let rows: Vec<Vec<usize>> = explanations
        .iter()
        .map(|e| e.steps.iter().map(|st| st.row).collect())
        .collect();
    let occluders: Vec<Occluder> = explanations
        .iter()
        .map(|e| Occluder::covering(e.steps.iter().map(|st| st.image_box)))
        .collect();
    let maps = occlusion_maps(
        model,
        &chw,
        size,
        &rows,
        &occluders,
        OCCLUSION_BATCH,
        model.device(),
    )?;
    for (explanation, per_step) in explanations.iter_mut().zip(&maps) {
        for (step, map) in explanation.steps.iter_mut().zip(per_step) {
            let b = step.image_box;
            let (w, h) = ((b[2] - b[0]) as usize, (b[3] - b[1]) as usize);
            step.occlusion_box = Some(best_window(map, size, w, h));
        }
    }
    Ok(())
}

/// One explained image, as listed in `index.json` of the output directory.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainedImage {
    /// The image file.
    pub image: PathBuf,
    /// Its explanation page.
    pub page: PathBuf,
    /// Predicted class.
    pub class_index: usize,
    /// Predicted class name.
    pub class_name: String,
    /// The true class, when known.
    pub true_class: Option<usize>,
    /// The greedy explanation (path, patches, similarity maps, leaf distribution).
    pub explanation: LocalExplanation,
    /// The image as the model saw it (resized), PNG bytes; not serialised.
    #[serde(skip)]
    pub thumbnail_png: Vec<u8>,
}

/// A directory name for `image` not yet in `used`.
fn page_dir_name(image: &Path, used: &mut HashSet<String>) -> String {
    let stem: String = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = stem.clone();
    let mut k = 2;
    while !used.insert(name.clone()) {
        name = format!("{stem}_{k}");
        k += 1;
    }
    name
}

/// Explains the greedy prediction of each image file with `saved`, writing
/// `out/<image>/index.html` (self-contained), `out/<image>/explanation.json` and
/// `out/index.json`. `true_classes`, when given, has one entry per image.
pub fn explain_images(
    saved: &SavedModel,
    images: &[PathBuf],
    true_classes: Option<&[usize]>,
    out: &Path,
    obs: &mut dyn Observer,
) -> Result<Vec<ExplainedImage>> {
    if images.is_empty() {
        return Err(Error::Invalid("no images to explain".into()));
    }
    if let Some(t) = true_classes {
        if t.len() != images.len() {
            return Err(Error::Invalid(format!(
                "{} true classes for {} images",
                t.len(),
                images.len()
            )));
        }
    }
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let model = &saved.model;
    let size = saved.meta.preprocessing.image_size;
    let (pictures, _) = prototype_pictures(saved)?;
    let patches: HashMap<NodeId, Vec<u8>> = pictures
        .iter()
        .map(|(k, v)| (*k, v.patch_png.clone()))
        .collect();
    let mut used = HashSet::new();
    let mut results = Vec::with_capacity(images.len());
    obs.stage_started(Stage::Report, images.len());
    const CHUNK: usize = 16;
    for (c, chunk) in images.chunks(CHUNK).enumerate() {
        let (batch, shown) = model_input(&saved.meta, chunk, model.device())?;
        let latent = model.latent(&batch, false)?;
        let mut explanations = explain_latent(model, &latent, size, size)?;
        add_occlusion_boxes(model, &batch, size as usize, &mut explanations)?;
        for (i, (path, explanation)) in chunk.iter().zip(explanations).enumerate() {
            let index = c * CHUNK + i;
            let true_class = true_classes.map(|t| t[index]);
            let dir = out.join(page_dir_name(path, &mut used));
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            let title = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let page = ExplanationPage {
                title,
                image: &shown[i],
                explanation: &explanation,
                class_names: &saved.meta.class_names,
                true_class,
                prototype_patches: &patches,
            };
            let page_path = dir.join("index.html");
            write_atomic(&page_path, page.to_string().as_bytes())?;
            let class_name = saved
                .meta
                .class_names
                .get(explanation.class_index)
                .cloned()
                .unwrap_or_default();
            let item = ExplainedImage {
                image: path.clone(),
                page: page_path,
                class_index: explanation.class_index,
                class_name,
                true_class,
                explanation,
                thumbnail_png: png_bytes(&shown[i]),
            };
            let json =
                serde_json::to_vec_pretty(&item).map_err(|e| Error::Invalid(e.to_string()))?;
            write_atomic(&dir.join("explanation.json"), &json)?;
            results.push(item);
            obs.stage_progress(results.len());
        }
    }
    let index: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            serde_json::json!({
                "image": r.image,
                "page": r.page,
                "class_index": r.class_index,
                "class_name": r.class_name,
                "true_class": r.true_class,
                "path": r.explanation.steps.iter().map(|s| serde_json::json!({
                    "node": s.node.0, "similarity": s.similarity, "present": s.present,
                    "patch": [s.patch_row, s.patch_col],
                    "box": s.image_box, "occlusion_box": s.occlusion_box,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let json = serde_json::to_vec_pretty(&index).map_err(|e| Error::Invalid(e.to_string()))?;
    write_atomic(&out.join("index.json"), &json)?;
    obs.stage_finished(Stage::Report);
    Ok(results)
}
