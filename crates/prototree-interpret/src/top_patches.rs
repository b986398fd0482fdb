//! The training patches most similar to each prototype, one per image: the gallery a
//! report shows beside the projected patch (PIP-Net shows a prototype as its top-10
//! patches; a single projected patch hides whether the prototype means one thing).

use candle_core::Tensor;
use prototree_tree::{BatchSource, ProtoTree};

use crate::project::scan_distances;
use crate::Result;

/// One of a prototype's most similar patches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopPatch {
    /// Squared distance to the prototype.
    pub dist_sq: f32,
    /// Image index in the source's order.
    pub image_index: usize,
    /// The image's class.
    pub class: usize,
    /// Patch index (row-major in the feature map).
    pub patch: usize,
}

/// Running search of the `k` most similar patches per prototype row, at most one per
/// image (an image's nearest patch), over batches.
#[derive(Debug, Clone)]
pub struct TopPatchSearch {
    rows: Vec<usize>,
    k: usize,
    /// Per row, the best `k` so far, nearest first.
    best: Vec<Vec<TopPatch>>,
    seen: usize,
}

impl TopPatchSearch {
    /// A search keeping `k` patches for each prototype row in `rows`.
    pub fn new(rows: Vec<usize>, k: usize) -> Self {
        let n = rows.len();
        Self {
            rows,
            k,
            best: vec![Vec::new(); n],
            seen: 0,
        }
    }

    /// Adds a batch: squared distances `(b, n, P)` and the images' classes.
    pub fn add(&mut self, dist_sq: &Tensor, labels: &[u32]) -> Result<()> {
        let (b, n, p) = dist_sq.dims3()?;
        let dist = dist_sq.flatten_all()?.to_vec1::<f32>()?;
        for k in 0..self.rows.len() {
            let row = self.rows[k];
            if row >= p {
                continue;
            }
            for bi in 0..b.min(labels.len()) {
                // The image's nearest patch (lowest index on ties).
                let mut nearest = (f32::INFINITY, 0usize);
                for ni in 0..n {
                    let v = dist[(bi * n + ni) * p + row];
                    if v < nearest.0 {
                        nearest = (v, ni);
                    }
                }
                if !nearest.0.is_finite() {
                    continue;
                }
                self.offer(
                    k,
                    TopPatch {
                        dist_sq: nearest.0,
                        image_index: self.seen + bi,
                        class: labels[bi] as usize,
                        patch: nearest.1,
                    },
                );
            }
        }
        self.seen += b;
        Ok(())
    }

    /// Inserts `candidate` into row `k`'s list if it is among the best `self.k` (earlier
    /// images first on equal distances).
    fn offer(&mut self, k: usize, candidate: TopPatch) {
        let keep = self.k;
        let list = &mut self.best[k];
        if list.len() == keep
            && list
                .last()
                .is_some_and(|worst| candidate.dist_sq >= worst.dist_sq)
        {
            return;
        }
        let at = list.partition_point(|t| t.dist_sq <= candidate.dist_sq);
        list.insert(at, candidate);
        list.truncate(keep);
    }

    /// The patches per row, nearest first.
    pub fn finish(self) -> Vec<(usize, Vec<TopPatch>)> {
        self.rows.into_iter().zip(self.best).collect()
    }
}

/// What [`top_patches`] finds.
#[derive(Debug, Clone)]
pub struct TopPatches {
    /// Per decision row (heap index), its patches, nearest first.
    pub rows: Vec<(usize, Vec<TopPatch>)>,
    /// Feature-map height (patch index = row · width + column).
    pub fmap_height: usize,
    /// Feature-map width.
    pub fmap_width: usize,
}

/// The `k` training patches (one per image) nearest to each decision node's prototype of
/// `model`, over every image of `source` (in its order, which must not shuffle).
/// `progress(done, total)` counts batches.
pub fn top_patches(
    model: &ProtoTree,
    source: &mut dyn BatchSource,
    k: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TopPatches> {
    let mut search = TopPatchSearch::new(model.topology().decision_rows(), k);
    let (fmap_height, fmap_width) =
        scan_distances(model, source, progress, &mut |_, dist_sq, labels| {
            search.add(dist_sq, labels)
        })?;
    Ok(TopPatches {
        rows: search.finish(),
        fmap_height,
        fmap_width,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn keeps_the_nearest_patch_of_the_nearest_images() -> anyhow::Result<()> {
        // Two prototype rows (0 and 1), three images of two patches each, per batch.
        let mut search = TopPatchSearch::new(vec![0, 1], 2);
        // dist[(image, patch, row)]
        let d1 = Tensor::new(
            &[
                [[4f32, 9.0], [1.0, 9.0]], // image 0: row 0 nearest at patch 1 (1.0)
                [[3.0, 0.5], [2.0, 8.0]],  // image 1: row 0 → 2.0, row 1 → 0.5
                [[0.2, 7.0], [5.0, 7.0]],  // image 2: row 0 → 0.2, row 1 → 7.0 (patch 0)
            ],
            &Device::Cpu,
        )?;
        search.add(&d1, &[3, 1, 3])?;
        let d2 = Tensor::new(&[[[0.9f32, 0.1], [6.0, 6.0]]], &Device::Cpu)?;
        search.add(&d2, &[0])?;
        let result = search.finish();
        let summary: Vec<Vec<(usize, usize, usize)>> = result
            .iter()
            .map(|(_, list)| {
                list.iter()
                    .map(|t| (t.image_index, t.patch, t.class))
                    .collect()
            })
            .collect();
        // Row 0: image 2 (0.2), then image 3 (0.9); image 0 (1.0) drops out.
        assert_eq!(summary[0], vec![(2, 0, 3), (3, 0, 0)]);
        // Row 1: image 3 (0.1), image 1 (0.5).
        assert_eq!(summary[1], vec![(3, 0, 0), (1, 0, 1)]);
        assert_eq!(result[0].0, 0);
        Ok(())
    }

    #[test]
    fn equal_distances_keep_the_earlier_image() {
        let mut search = TopPatchSearch::new(vec![0], 1);
        for image in 0..3 {
            search.offer(
                0,
                TopPatch {
                    dist_sq: 1.0,
                    image_index: image,
                    class: 0,
                    patch: 0,
                },
            );
        }
        assert_eq!(search.finish()[0].1[0].image_index, 0);
    }
}
