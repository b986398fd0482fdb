//! Each decision node's most similar training patches for the report's gallery, with the
//! part under each patch and the node's purity over them (PIP-Net's top-k purity) when
//! the data set has part annotations. Each patch is cut from the box its match depends on
//! (the explanation metrics' occlusion box), not from the latent cell's box, which a small
//! CNN's wide receptive field often puts beside the part.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Device;
use image::RgbImage;
use prototree_data::transform::to_chw;
use prototree_data::{CubDataset, Loader};
use prototree_interpret::{top_patches, TopPatch};
use prototree_metrics::consistency::purity;
use prototree_metrics::input_gradients::best_window;
use prototree_metrics::occlusion_box::{best_occluded_window, occlusion_maps, Occluder};
use prototree_metrics::{AnnotationSource, PartShare};
use prototree_render::visualize::{crop, png_bytes, upscale};
use prototree_render::GalleryPatch;
use prototree_tree::distance::DISTANCE_EPS;
use prototree_tree::geometry::{patch_box, PixelBox};
use prototree_tree::{NodeId, Observer, SavedModel, Stage};

use crate::source::LoaderSource;
use crate::Result;

/// Patches per node in the report's gallery (PIP-Net's top 10).
pub const GALLERY_PATCHES: usize = 10;

/// Squared distance below which a gallery patch is the prototype itself (its projection
/// source), where the similarity's gradient vanishes.
const EXACT_MATCH_DIST_SQ: f32 = 1e-4;

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

/// Occluded copies per forward pass.
const OCCLUSION_BATCH: usize = 64;

/// Where each gallery patch's match depends on its image, as the explanation metrics
/// place their regions ([`prototree_metrics::occlusion_box`]): the window of the patch
/// box's size at the most of the image's occlusion map, or, for a patch that is the
/// prototype itself (its projection source), the window whose occlusion lowers the
/// similarity the most, searched directly.
fn match_boxes(
    saved: &SavedModel,
    row: usize,
    tops: &[(&TopPatch, &RgbImage)],
    (fh, fw): (usize, usize),
    device: &Device,
) -> Result<Vec<PixelBox>> {
    let Some((_, first)) = tops.first() else {
        return Ok(Vec::new());
    };
    let norm = saved.meta.preprocessing.normalization();
    let side = first.width() as usize;
    let plane = 3 * side * side;
    let mut chw = vec![0f32; tops.len() * plane];
    for ((_, img), out) in tops.iter().zip(chw.chunks_exact_mut(plane)) {
        to_chw(img, &norm, out);
    }
    let patch_boxes: Vec<PixelBox> = tops
        .iter()
        .map(|(t, img)| {
            let (w, h) = img.dimensions();
            patch_box(
                (t.patch / fw.max(1)) as u32,
                (t.patch % fw.max(1)) as u32,
                fh as u32,
                fw as u32,
                w,
                h,
            )
        })
        .collect();
    // The source is searched directly; every other patch gets the occlusion map.
    let is_source: Vec<bool> = tops
        .iter()
        .map(|(t, _)| t.dist_sq <= EXACT_MATCH_DIST_SQ)
        .collect();
    let rows: Vec<Vec<usize>> = is_source
        .iter()
        .map(|&s| if s { Vec::new() } else { vec![row] })
        .collect();
    let occluders: Vec<Occluder> = patch_boxes
        .iter()
        .map(|b| Occluder::covering([*b]))
        .collect();
    let maps = occlusion_maps(
        &saved.model,
        &chw,
        side,
        &rows,
        &occluders,
        OCCLUSION_BATCH,
        device,
    )?;
    let mut boxes = Vec::with_capacity(tops.len());
    for (i, (b, per_row)) in patch_boxes.iter().zip(&maps).enumerate() {
        let (bw, bh) = ((b[2] - b[0]) as usize, (b[3] - b[1]) as usize);
        let image = &chw[i * plane..(i + 1) * plane];
        let found = match per_row.first() {
            Some(map) if !is_source[i] => best_window(map, side, bw, bh),
            _ => {
                let search = best_occluded_window(
                    &saved.model,
                    image,
                    side,
                    row,
                    bw,
                    bh,
                    OCCLUSION_BATCH,
                    device,
                );
                search?.0
            }
        };
        boxes.push(found);
    }
    Ok(boxes)
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
        let tops: Vec<(&TopPatch, &RgbImage)> = tops
            .iter()
            .filter_map(|t| loader.image(t.image_index).map(|img| (t, img)))
            .collect();
        let boxes = match_boxes(saved, row, &tops, (fh, fw), device)?;
        let mut patches = Vec::with_capacity(tops.len());
        let mut regions = Vec::new();
        for ((t, img), b) in tops.into_iter().zip(boxes) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_config::RunConfig;
    use prototree_backbone::BackboneKind;
    use prototree_tree::ProtoTree;

    /// A gallery patch that is the prototype itself takes the directly searched occlusion
    /// box; any other the best window of its occlusion map, each of the patch box's size.
    #[test]
    fn match_boxes_are_the_occlusion_boxes() -> anyhow::Result<()> {
        let run = RunConfig {
            backbone: BackboneKind::SmallCnn,
            depth: 2,
            proto_dim: 8,
            image_size: 32,
            ..RunConfig::default()
        };
        let meta = run.model_meta(vec!["a".into(), "b".into()]);
        let model = ProtoTree::new(&meta.tree.clone().check()?, &Device::Cpu, 1)?;
        let saved = SavedModel::new(model, meta);
        let img = |k: u32| {
            RgbImage::from_fn(32, 32, |x, y| {
                image::Rgb([
                    ((x * 7 + k) % 256) as u8,
                    ((y * 13) % 256) as u8,
                    (k * 40) as u8,
                ])
            })
        };
        let (a, b) = (img(1), img(2));
        let near = TopPatch {
            dist_sq: 0.0,
            image_index: 0,
            class: 0,
            patch: 5,
        };
        let far = TopPatch {
            dist_sq: 0.5,
            patch: 10,
            ..near
        };
        let tops = [(&near, &a), (&far, &b)];
        let boxes = match_boxes(&saved, 1, &tops, (4, 4), &Device::Cpu)?;
        assert_eq!(boxes.len(), 2);
        // Each box has its patch box's size.
        for ((t, _), got) in tops.iter().zip(&boxes) {
            let p = patch_box((t.patch / 4) as u32, (t.patch % 4) as u32, 4, 4, 32, 32);
            assert_eq!(
                (got[2] - got[0], got[3] - got[1]),
                (p[2] - p[0], p[3] - p[1])
            );
        }
        // The exact match's box is the searched occlusion box, the other the best window
        // of its image's occlusion map alone.
        let norm = saved.meta.preprocessing.normalization();
        let chw = |im: &RgbImage| {
            let mut out = vec![0f32; 3 * 32 * 32];
            to_chw(im, &norm, &mut out);
            out
        };
        let p = patch_box(1, 1, 4, 4, 32, 32);
        let (w, h) = ((p[2] - p[0]) as usize, (p[3] - p[1]) as usize);
        let (searched, _) =
            best_occluded_window(&saved.model, &chw(&a), 32, 1, w, h, 64, &Device::Cpu)?;
        assert_eq!(boxes[0], searched);
        let p = patch_box(2, 2, 4, 4, 32, 32);
        let (w, h) = ((p[2] - p[0]) as usize, (p[3] - p[1]) as usize);
        let maps = occlusion_maps(
            &saved.model,
            &chw(&b),
            32,
            &[vec![1]],
            &[Occluder::covering([p])],
            64,
            &Device::Cpu,
        )?;
        assert_eq!(boxes[1], best_window(&maps[0][0], 32, w, h));
        assert!(match_boxes(&saved, 1, &[], (4, 4), &Device::Cpu)?.is_empty());
        Ok(())
    }
}
