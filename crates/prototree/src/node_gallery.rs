//! Each decision node's most similar training patches for the report's gallery, with the
//! part under each patch and the node's purity over them (PIP-Net's top-k purity) when
//! the data set has part annotations.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Device;
use prototree_data::{CubDataset, Loader};
use prototree_interpret::top_patches;
use prototree_metrics::consistency::purity;
use prototree_metrics::{AnnotationSource, PartShare};
use prototree_render::visualize::{crop, png_bytes, upscale};
use prototree_render::GalleryPatch;
use prototree_tree::distance::DISTANCE_EPS;
use prototree_tree::geometry::patch_box;
use prototree_tree::{NodeId, Observer, SavedModel, Stage};

use crate::source::LoaderSource;
use crate::Result;

/// Patches per node in the report's gallery (PIP-Net's top 10).
pub const GALLERY_PATCHES: usize = 10;

/// Share of a patch's pixels a part needs to count as under it (as the explanation
/// metrics' default).
const MIN_PART_SHARE: f32 = 0.05;

/// One node's gallery.
#[derive(Debug, Clone)]
pub struct NodeGallery {
    /// Its most similar training patches (one per image), nearest first.
    pub patches: Vec<GalleryPatch>,
    /// The part most of those patches contain and its share, with part annotations.
    pub purity: Option<PartShare>,
    /// The name of [`NodeGallery::purity`]'s part.
    pub purity_part: Option<String>,
}

impl NodeGallery {
    /// "90% (wing)"-style text of the purity, when known.
    pub fn purity_text(&self) -> Option<String> {
        let p = self.purity?;
        let part = self.purity_part.as_deref().unwrap_or("no part");
        Some(format!("{:.0}% ({part})", 100.0 * p.share))
    }
}

/// The galleries of every decision node of `saved`: its `k` most similar patches among
/// the training images of `loader` (the projection's views of the data set in `data_dir`:
/// [`projection_loader`](crate::workflow::projection_loader)), cropped as the model saw
/// them, captioned with their class and, when the data set has part annotations, the part
/// under each patch. Reports [`Stage::Report`] progress over the batches.
pub fn node_galleries(
    saved: &SavedModel,
    data_dir: &Path,
    loader: &Loader,
    k: usize,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<HashMap<NodeId, NodeGallery>> {
    let mut source = LoaderSource::new(loader, device, 0);
    obs.stage_started(Stage::Report, loader.num_batches());
    let found = top_patches(&saved.model, &mut source, k, &mut |done, _| {
        obs.stage_progress(done)
    })?;
    let (fh, fw) = (found.fmap_height, found.fmap_width);
    obs.stage_finished(Stage::Report);
    // Part annotations are optional: an ImageFolder tree or a CUB copy without parts
    // gives galleries without parts.
    let annotations = CubDataset::open(data_dir)
        .ok()
        .and_then(|ds| AnnotationSource::open(&ds).ok().map(|src| (ds, src)));
    let part_names: Vec<String> = annotations
        .as_ref()
        .map(|(_, src)| src.part_names().to_vec())
        .unwrap_or_default();
    let size = saved.meta.preprocessing.image_size;
    let class_names = &saved.meta.class_names;
    let topo = saved.model.topology();
    let mut galleries = HashMap::new();
    for (row, tops) in found.rows {
        let mut patches = Vec::with_capacity(tops.len());
        let mut regions = Vec::new();
        for t in &tops {
            let Some(img) = loader.image(t.image_index) else {
                continue;
            };
            let (w, h) = img.dimensions();
            let b = patch_box(
                (t.patch / fw.max(1)) as u32,
                (t.patch % fw.max(1)) as u32,
                fh as u32,
                fw as u32,
                w,
                h,
            );
            let piece = crop(img, b);
            let factor = (32 / piece.width().max(piece.height()).max(1)).max(1);
            let class = class_names
                .get(t.class)
                .map(|n| n.replace('_', " "))
                .unwrap_or_else(|| t.class.to_string());
            let mut caption = format!(
                "{class}, similarity {:.2}",
                (-(f64::from(t.dist_sq) + DISTANCE_EPS).sqrt()).exp()
            );
            if let (Some((ds, src)), Some(sample)) =
                (&annotations, loader.samples().get(t.image_index))
            {
                let ann = src.load_view(ds, sample, size, loader.crop(t.image_index))?;
                let region = ann.region(b, MIN_PART_SHARE);
                caption.push_str(&format!(", {}", region.label.describe(&part_names)));
                regions.push(region.parts);
            }
            patches.push(GalleryPatch {
                png: png_bytes(&upscale(&piece, factor)),
                caption,
            });
        }
        let purity = purity(&regions);
        let purity_part = purity
            .and_then(|p| p.part)
            .and_then(|i| part_names.get(i).cloned());
        galleries.insert(
            topo.node_id(row),
            NodeGallery {
                patches,
                purity,
                purity_part,
            },
        );
    }
    Ok(galleries)
}
