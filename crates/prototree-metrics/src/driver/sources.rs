//! Where the projected prototypes come from: their source patch and its annotated part.

use std::collections::HashMap;
use std::path::Path;

use prototree_data::{CubDataset, Sample, Split};
use prototree_tree::SavedModel;

use super::TestSet;
use crate::dataset::AnnotationSource;
use crate::localization::{locate, source_box};
use crate::metrics::SourceRegion;
use crate::parts::RegionLabel;
use crate::Result;

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
        sources.insert(
            row,
            SourceRegion {
                image_path: rec.image_path.clone(),
                image_box: source_box(rec, test.size),
                part_name: region.label.part().and_then(|p| part_names.get(p).cloned()),
                region,
            },
        );
    }
    Ok(sources)
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
