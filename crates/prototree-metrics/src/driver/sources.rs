//! Where the projected prototypes come from: their source patch and its annotated part.

use std::collections::HashMap;
use std::path::Path;

use prototree_data::{CubDataset, Sample, Split};
use prototree_tree::SavedModel;

use super::TestSet;
use crate::dataset::AnnotationSource;
use crate::localization::{locate, source_box};
use crate::metrics::SourceRegion;
use crate::occlusion_box::source_occlusion_box;
use crate::parts::RegionLabel;
use crate::perturb::{perturb, Area, FloatImage, Perturbation};
use crate::Result;
use candle_core::Tensor;
use prototree_tree::geometry::PixelBox;
use prototree_tree::ProjectionRecord;

/// The source region of each projected decision node, keyed by its row; prototypes
/// whose image is not in the data set or whose patch lies on no known region are left out.
pub(super) fn projection_sources(
    saved: &SavedModel,
    ds: &CubDataset,
    source: &AnnotationSource,
    test: &TestSet,
) -> Result<HashMap<usize, SourceRegion>> {
    let all = ds.samples(Split::All);
    let by_path: HashMap<String, &Sample> = all
        .iter()
        .map(|s| (s.path.display().to_string(), s))
        .collect();
    let by_tail: HashMap<String, &Sample> = all.iter().map(|s| (path_tail(&s.path), s)).collect();
    let part_names = source.part_names();
    let mut sources = HashMap::new();
    for rec in saved.projections() {
        let row = rec.row as usize;
        if !test.rows.contains(&row) {
            continue;
        }
        let (path, crop) = prototree_data::parse_image_ref(&rec.image_path);
        let Some(sample) = find_sample(&by_path, &by_tail, &path.display().to_string()) else {
            continue;
        };
        let ann = source.load_view(ds, sample, test.size, crop)?;
        let region = locate(&ann, rec, test.cfg.min_part_share);
        if region.label == RegionLabel::Unknown {
            continue;
        }
        let image_box = source_box(rec, test.size);
        let boxes = source_boxes(test, rec, image_box)?;
        sources.insert(
            row,
            SourceRegion {
                image_path: rec.image_path.clone(),
                image_box,
                part_name: region.label.part().and_then(|p| part_names.get(p).cloned()),
                region,
                occlusion_region: boxes
                    .map(|b| ann.region(b.occlusion_box, test.cfg.min_part_share)),
                occlusion_box: boxes.map(|b| b.occlusion_box),
                patch_box_drop: boxes.map(|b| b.patch_box_drop),
                occlusion_box_drop: boxes.map(|b| b.occlusion_box_drop),
            },
        );
    }
    Ok(sources)
}

/// A source patch's occlusion box and what occluding each box does.
#[derive(Debug, Clone, Copy)]
struct SourceBoxes {
    occlusion_box: PixelBox,
    patch_box_drop: f64,
    occlusion_box_drop: f64,
}

/// The occlusion box of projection `rec` on its source image (`None` when the image
/// cannot be read), of the size of the patch box `patch`
/// ([`crate::occlusion_box::source_occlusion_box`]), and the drop of the prototype's
/// similarity when either box is filled with the image's mean colour.
fn source_boxes(
    test: &TestSet,
    rec: &ProjectionRecord,
    patch: PixelBox,
) -> Result<Option<SourceBoxes>> {
    let Ok(img) = prototree_data::load_image_ref(&rec.image_path) else {
        return Ok(None);
    };
    let img = FloatImage::from_rgb(&prototree_data::transform::resize_square(&img, test.size));
    let chw = test.chw_of(std::slice::from_ref(&img));
    let size = test.size as usize;
    let occlusion_box = source_occlusion_box(
        test.model,
        &chw,
        size,
        rec,
        test.cfg.batch_size,
        test.device,
    )?;
    // The plain image and the two occluded ones in one batch.
    let occluded = |b: PixelBox| perturb(&img, Perturbation::MeanFill, b, Area::Inside, 0);
    let batch = test.chw_of(&[img.clone(), occluded(patch), occluded(occlusion_box)]);
    let input = Tensor::from_vec(batch, (3, 3, size, size), test.device)?;
    let routing = test.model.forward(&input, false)?.routing;
    let sim = routing
        .narrow(1, rec.row as usize, 1)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let drop = |k: usize| f64::from(sim[0] - sim[k]);
    Ok(Some(SourceBoxes {
        occlusion_box,
        patch_box_drop: drop(1),
        occlusion_box_drop: drop(2),
    }))
}

/// Finds the data set sample an image path refers to: the same path, else the same last
/// two components (class folder and file) under `images/`.
fn find_sample<'a>(
    by_path: &HashMap<String, &'a Sample>,
    by_tail: &HashMap<String, &'a Sample>,
    path: &str,
) -> Option<&'a Sample> {
    by_path
        .get(path)
        .copied()
        .or_else(|| by_tail.get(&path_tail(Path::new(path))).copied())
}

fn path_tail(p: &Path) -> String {
    let parts: Vec<String> = p
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts[parts.len().saturating_sub(2)..].join("/")
}
