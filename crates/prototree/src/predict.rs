//! Predicting image files with a saved model: the model's own test-time preprocessing
//! (resize to the input size, scale to [0, 1], normalise), then soft, greedy or max-leaf
//! routing with the decision path.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::RgbImage;
use prototree_data::load_rgb;
use prototree_data::transform::{resize_square, to_chw};
use prototree_tree::{ModelMeta, Routing, SavedModel};
use serde::Serialize;

use crate::Result;

/// Images per forward pass.
const CHUNK: usize = 16;

/// Decodes and preprocesses `paths` as the model expects them: the batch `(n, 3, s, s)`
/// and the resized images.
pub fn model_input(
    meta: &ModelMeta,
    paths: &[PathBuf],
    device: &Device,
) -> Result<(Tensor, Vec<RgbImage>)> {
    let p = meta.preprocessing;
    let size = p.image_size;
    let norm = p.normalization();
    let plane = 3 * (size * size) as usize;
    let mut pixels = vec![0f32; paths.len() * plane];
    let mut shown = Vec::with_capacity(paths.len());
    for (i, path) in paths.iter().enumerate() {
        let img = resize_square(&load_rgb(path)?, size);
        to_chw(&img, &norm, &mut pixels[i * plane..(i + 1) * plane]);
        shown.push(img);
    }
    let batch = Tensor::from_vec(
        pixels,
        (paths.len(), 3, size as usize, size as usize),
        device,
    )?;
    Ok((batch, shown))
}

/// One decision on a prediction's path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathEntry {
    /// The node (reference numbering).
    pub node: u32,
    /// Similarity of the node's prototype to the image's nearest patch.
    pub similarity: f32,
    /// Whether the path went to the "present" (right) child.
    pub present: bool,
}

/// The prediction for one image file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImagePrediction {
    /// The file.
    pub image: PathBuf,
    /// Predicted class.
    pub class_index: usize,
    /// Its name.
    pub class_name: String,
    /// The class distribution (soft: the mixture; greedy / max-leaf: the reached leaf's).
    pub probabilities: Vec<f32>,
    /// The decisions from the root (greedy path for soft routing).
    pub path: Vec<PathEntry>,
}

/// Predicts each image file with `saved` and `routing`.
pub fn predict_images(
    saved: &SavedModel,
    images: &[PathBuf],
    routing: Routing,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<ImagePrediction>> {
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(CHUNK) {
        let (batch, _) = model_input(&saved.meta, chunk, saved.model.device())?;
        for (path, p) in chunk.iter().zip(saved.model.predict(&batch, routing)?) {
            out.push(ImagePrediction {
                image: path.clone(),
                class_index: p.class_index,
                class_name: saved
                    .meta
                    .class_names
                    .get(p.class_index)
                    .cloned()
                    .unwrap_or_default(),
                probabilities: p.probabilities,
                path: p
                    .path
                    .iter()
                    .map(|s| PathEntry {
                        node: s.node.0,
                        similarity: s.similarity,
                        present: s.present,
                    })
                    .collect(),
            });
        }
        progress(out.len());
    }
    Ok(out)
}

/// Whether `path` looks like an image file we can read (by extension).
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| {
            prototree_data::image_folder::IMAGE_EXTENSIONS
                .contains(&e.to_ascii_lowercase().as_str())
        })
        .unwrap_or(false)
}
