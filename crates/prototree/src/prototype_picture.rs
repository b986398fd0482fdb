//! The pictures of a model's projected prototypes: the patch each decision node copies,
//! enlarged, and its source image with the patch's boxes.
//!
//! Two boxes are drawn on the source image: the latent cell's patch box (cyan, the
//! reference's) and, of the same size, the box the match depends on (orange): the window
//! whose occlusion lowers the prototype's similarity the most
//! ([`prototree_metrics::occlusion_box`]). A small CNN's latent cell sees far more than
//! its box, so the two can differ; the enlarged patch is cut from the orange box
//! (docs/explanations.md, "The region of an activation").

use std::collections::HashMap;

use image::RgbImage;
use prototree_data::load_image_ref;
use prototree_data::transform::{resize_square, to_chw};
use prototree_metrics::occlusion_box::source_occlusion_box;
use prototree_render::prototype_images;
use prototree_render::visualize::png_bytes;
use prototree_tree::geometry::PixelBox;
use prototree_tree::io::ProjectionRecord;
use prototree_tree::{NodeId, SavedModel};

use crate::Result;

/// Pictures of one projected prototype.
#[derive(Debug, Clone)]
pub struct PrototypePicture {
    /// The patch the match depends on (the orange box), enlarged (PNG bytes).
    pub patch_png: Vec<u8>,
    /// The source image with the patch box (cyan) and the box the match depends on
    /// (orange) (PNG bytes).
    pub boxed_png: Vec<u8>,
    /// The box the match depends on, in the source image as the model saw it.
    pub occlusion_box: PixelBox,
}

/// Renders every projected prototype of `saved` from its source image, as the model saw it
/// during projection (resized to the model's input size). Prototypes whose source image
/// cannot be read are skipped and listed in the second value.
pub fn prototype_pictures(
    saved: &SavedModel,
) -> Result<(HashMap<NodeId, PrototypePicture>, Vec<String>)> {
    let size = saved.meta.preprocessing.image_size;
    let mut cache: HashMap<&str, Option<RgbImage>> = HashMap::new();
    let mut pictures = HashMap::new();
    let mut missing = Vec::new();
    for record in saved.projections() {
        let source = cache
            .entry(record.image_path.as_str())
            .or_insert_with(|| {
                load_image_ref(&record.image_path)
                    .ok()
                    .map(|img| resize_square(&img, size))
            })
            .as_ref();
        match source {
            Some(img) => {
                let occlusion_box = occlusion_box_on(saved, img, record)?;
                let (patch, boxed) = prototype_images(img, record, Some(occlusion_box));
                pictures.insert(
                    record.node,
                    PrototypePicture {
                        patch_png: png_bytes(&patch),
                        boxed_png: png_bytes(&boxed),
                        occlusion_box,
                    },
                );
            }
            None => missing.push(record.image_path.clone()),
        }
    }
    missing.sort();
    missing.dedup();
    Ok((pictures, missing))
}

/// [`source_occlusion_box`] of `record` on `img` (its source as the model saw it), as the
/// explanation metrics place it.
fn occlusion_box_on(
    saved: &SavedModel,
    img: &RgbImage,
    record: &ProjectionRecord,
) -> Result<PixelBox> {
    let norm = saved.meta.preprocessing.normalization();
    let side = img.width() as usize;
    let mut chw = vec![0f32; 3 * side * side];
    to_chw(img, &norm, &mut chw);
    Ok(source_occlusion_box(
        &saved.model,
        &chw,
        side,
        record,
        64,
        saved.model.device(),
    )?)
}
