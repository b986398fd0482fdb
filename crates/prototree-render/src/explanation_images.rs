//! The pictures of local explanations and projected prototypes: the matched patch
//! enlarged, the image with the patch's box, and the similarity heatmap.

use image::RgbImage;
use prototree_interpret::LocalExplanation;
use prototree_tree::geometry::{patch_box, PixelBox};
use prototree_tree::io::ProjectionRecord;

use crate::visualize::{crop, draw_box, heatmap_overlay, outline, upscale, GRADIENT_BOX_COLOUR};

/// The pictures of one explained decision.
#[derive(Debug, Clone)]
pub struct StepImages {
    /// The image's most similar patch, enlarged.
    pub patch: RgbImage,
    /// The image with the patch's box.
    pub boxed: RgbImage,
    /// The similarity heatmap over the image.
    pub heatmap: RgbImage,
}

/// Renders the pictures of every step of `explanation` over `image` (the image as the
/// model saw it, after resizing).
pub fn explanation_images(image: &RgbImage, explanation: &LocalExplanation) -> Vec<StepImages> {
    explanation
        .steps
        .iter()
        .map(|s| {
            // The crop shows the region the match depends on when it is known.
            let patch = crop(image, s.occlusion_box.unwrap_or(s.image_box));
            let factor = (96 / patch.width().max(patch.height()).max(1)).max(1);
            let mut boxed = draw_box(image, s.image_box);
            if let Some(g) = s.occlusion_box {
                outline(&mut boxed, g, GRADIENT_BOX_COLOUR);
            }
            StepImages {
                patch: upscale(&patch, factor),
                boxed,
                heatmap: heatmap_overlay(
                    image,
                    &s.similarity_map,
                    explanation.fmap_height,
                    explanation.fmap_width,
                ),
            }
        })
        .collect()
}

/// The picture of a projected prototype: its source patch, enlarged, and the source image
/// with the patch's box (cyan), from the image as the model saw it during projection. With
/// `depends_on` (the box the match depends on, e.g. the source's occlusion box), that box
/// is drawn in orange too and the enlarged patch is cut from it.
pub fn prototype_images(
    source: &RgbImage,
    record: &ProjectionRecord,
    depends_on: Option<PixelBox>,
) -> (RgbImage, RgbImage) {
    let (w, h) = source.dimensions();
    let b = patch_box(
        record.patch_row,
        record.patch_col,
        record.fmap_height,
        record.fmap_width,
        w,
        h,
    );
    let patch = crop(source, depends_on.unwrap_or(b));
    let factor = (96 / patch.width().max(patch.height()).max(1)).max(1);
    let mut boxed = draw_box(source, b);
    if let Some(g) = depends_on {
        outline(&mut boxed, g, GRADIENT_BOX_COLOUR);
    }
    (upscale(&patch, factor), boxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prototree_interpret::ExplainedStep;
    use prototree_tree::topology::NodeId;

    #[test]
    fn pictures_show_the_box_and_the_map() {
        let step = ExplainedStep {
            node: NodeId(0),
            row: 0,
            similarity: 0.9,
            present: true,
            patch_row: 1,
            patch_col: 1,
            image_box: [17, 17, 64, 64],
            similarity_map: vec![0.1, 0.2, 0.3, 0.9],
            occlusion_box: None,
        };
        let ex = LocalExplanation {
            class_index: 1,
            probabilities: vec![0.0, 1.0],
            leaf: 3,
            steps: vec![step.clone(), step],
            fmap_height: 2,
            fmap_width: 2,
        };
        let img = RgbImage::from_pixel(64, 64, image::Rgb([100, 100, 100]));
        let pics = explanation_images(&img, &ex);
        assert_eq!(pics.len(), 2);
        assert_eq!(pics[0].boxed.dimensions(), (64, 64));
        // The box outline is drawn in cyan.
        assert_eq!(pics[0].boxed.get_pixel(17, 40).0, [0, 255, 255]);
        // An occlusion box is drawn in orange beside it.
        let mut with_gradient = ex.clone();
        with_gradient.steps[0].occlusion_box = Some([2, 2, 10, 10]);
        let pics = explanation_images(&img, &with_gradient);
        assert_eq!(pics[0].boxed.get_pixel(2, 5).0, GRADIENT_BOX_COLOUR);
        assert_eq!(pics[0].boxed.get_pixel(17, 40).0, [0, 255, 255]);
        assert_eq!(pics[1].boxed.get_pixel(2, 5).0, [100, 100, 100]);
        // The enlarged patch is cut from the occlusion box (8 px, ×12), else the patch box
        // (47 px, ×2).
        assert_eq!(pics[0].patch.dimensions(), (96, 96));
        assert_eq!(pics[1].patch.dimensions(), (94, 94));
    }

    #[test]
    fn a_prototype_shows_both_boxes_and_the_patch_it_depends_on() {
        let record = ProjectionRecord {
            node: NodeId(0),
            row: 0,
            image_index: 0,
            image_path: "source.png".into(),
            patch_row: 1,
            patch_col: 1,
            fmap_height: 2,
            fmap_width: 2,
            distance: 0.0,
        };
        let mut img = RgbImage::from_pixel(64, 64, image::Rgb([100, 100, 100]));
        img.put_pixel(3, 3, image::Rgb([200, 0, 0]));
        // Without an occlusion box: the patch box's crop and its cyan outline.
        let (patch, boxed) = prototype_images(&img, &record, None);
        assert_eq!(patch.dimensions(), (94, 94));
        assert_eq!(boxed.get_pixel(17, 40).0, [0, 255, 255]);
        // With one: the crop is cut from it (its top-left red pixel enlarged ×12), and it
        // is outlined in orange beside the cyan box.
        let (patch, boxed) = prototype_images(&img, &record, Some([3, 3, 11, 11]));
        assert_eq!(patch.dimensions(), (96, 96));
        assert_eq!(patch.get_pixel(5, 5).0, [200, 0, 0]);
        assert_eq!(boxed.get_pixel(3, 7).0, GRADIENT_BOX_COLOUR);
        assert_eq!(boxed.get_pixel(17, 40).0, [0, 255, 255]);
    }
}
