//! Where the projected prototypes come from: their source patch and its annotated part.

use std::collections::HashMap;
use std::path::Path;

use prototree_data::{CubDataset, Sample, Split};
use prototree_tree::SavedModel;

use super::TestSet;
use crate::dataset::AnnotationSource;
use crate::gradient_box::best_window;
use crate::localization::{locate, source_box};
use crate::metrics::SourceRegion;
use crate::parts::RegionLabel;
use crate::perturb::FloatImage;
use crate::smoothgrad::{smoothgrad_map, SmoothGrad};
use crate::Result;
use prototree_tree::geometry::PixelBox;

/// Noisy copies for a source's gradient box when SmoothGrad is switched off.
const SOURCE_SMOOTHGRAD_SAMPLES: usize = 8;

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
        let gradient_box = source_gradient_box(test, &rec.image_path, row, image_box)?;
        sources.insert(
            row,
            SourceRegion {
                image_path: rec.image_path.clone(),
                image_box,
                part_name: region.label.part().and_then(|p| part_names.get(p).cloned()),
                region,
                gradient_region: gradient_box.map(|b| ann.region(b, test.cfg.min_part_share)),
                gradient_box,
            },
        );
    }
    Ok(sources)
}

/// The gradient box ([`crate::gradient_box`]) of prototype row `row` on its source image
/// (`None` when the image cannot be read), of the size of the patch box `patch`. The
/// source patch *is* the projected prototype, where the similarity is at its maximum and
/// its gradient vanishes, so the box follows the SmoothGrad map instead (the gradient
/// averaged over noisy copies, [`crate::smoothgrad`]; 8 copies when SmoothGrad is off).
fn source_gradient_box(
    test: &TestSet,
    image_ref: &str,
    row: usize,
    patch: PixelBox,
) -> Result<Option<PixelBox>> {
    let Ok(img) = prototree_data::load_image_ref(image_ref) else {
        return Ok(None);
    };
    let img = prototree_data::transform::resize_square(&img, test.size);
    let chw = test.chw_of(&[FloatImage::from_rgb(&img)]);
    let size = test.size as usize;
    let cfg = test.cfg;
    let settings = SmoothGrad {
        samples: if cfg.smoothgrad_samples == 0 {
            SOURCE_SMOOTHGRAD_SAMPLES
        } else {
            cfg.smoothgrad_samples
        },
        sigma: cfg.smoothgrad_sigma,
        seed: cfg.seed ^ ((row as u64) << 8) ^ 0x50c,
    };
    let map = smoothgrad_map(test.model, &chw, size, row, &settings, test.device)?;
    let (w, h) = (
        (patch[2] - patch[0]) as usize,
        (patch[3] - patch[1]) as usize,
    );
    Ok(Some(best_window(&map, size, w, h)))
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
