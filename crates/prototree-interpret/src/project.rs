//! Prototype projection (spec §4): each decision node's prototype becomes its nearest
//! latent patch among the projection images whose label is one of the classes its subtree
//! predicts (the reference's class constraint). Distances for every prototype and patch of
//! a batch come from one matrix product; the search keeps running minima (the first
//! occurrence wins ties, as the reference's strict `<`).

use candle_core::Tensor;
use prototree_tree::distance::{squared_distances, DISTANCE_EPS};
use prototree_tree::io::ProjectionRecord;
use prototree_tree::topology::Topology;
use prototree_tree::{BatchSource, ProtoTree};

use crate::{Error, Result};

/// For each branch (heap order), which classes its projection may come from: the top
/// classes of the reachable leaves below it.
pub fn allowed_classes(topo: &Topology, leaf_top: &[usize], num_classes: usize) -> Vec<Vec<bool>> {
    let nb = topo.num_branches();
    let reach = topo.reachable_heap();
    let n = reach.len();
    let mut allowed = vec![vec![false; num_classes]; n];
    for h in (0..n).rev() {
        if !reach[h] {
            continue;
        }
        if h >= nb {
            if let Some(c) = leaf_top.get(h - nb) {
                if *c < num_classes {
                    allowed[h][*c] = true;
                }
            }
        } else {
            let merged: Vec<bool> = (0..num_classes)
                .map(|c| {
                    (reach[2 * h + 1] && allowed[2 * h + 1][c])
                        || (reach[2 * h + 2] && allowed[2 * h + 2][c])
                })
                .collect();
            allowed[h] = merged;
        }
    }
    allowed.truncate(nb);
    allowed
}

/// The best patch found so far for one prototype.
#[derive(Debug, Clone, PartialEq)]
pub struct NearestPatch {
    /// Squared distance.
    pub dist_sq: f32,
    /// Image index in the projection order.
    pub image_index: usize,
    /// Patch index (row-major in the feature map).
    pub patch: usize,
    /// The latent patch.
    pub vector: Vec<f32>,
}

/// Running nearest-patch search over batches, for the prototypes in `rows`.
#[derive(Debug, Clone)]
pub struct NearestPatchSearch {
    rows: Vec<usize>,
    allowed: Vec<Vec<bool>>,
    best: Vec<Option<NearestPatch>>,
    seen: usize,
}

impl NearestPatchSearch {
    /// A search for prototype rows `rows`; `allowed[row][class]` is the class constraint.
    pub fn new(rows: Vec<usize>, allowed: Vec<Vec<bool>>) -> Self {
        let n = rows.len();
        Self {
            rows,
            allowed,
            best: vec![None; n],
            seen: 0,
        }
    }

    /// Adds a batch: `patches` `(b, n, d)`, squared distances `(b, n, P)` and labels.
    pub fn add(&mut self, patches: &Tensor, dist_sq: &Tensor, labels: &[u32]) -> Result<()> {
        let (b, n, d) = patches.dims3()?;
        let p = dist_sq.dim(2)?;
        let dist = dist_sq.flatten_all()?.to_vec1::<f32>()?;
        let z = patches.flatten_all()?.to_vec1::<f32>()?;
        for (k, &row) in self.rows.iter().enumerate() {
            let allowed = &self.allowed[row];
            for (bi, &label) in labels.iter().enumerate().take(b) {
                if !allowed.get(label as usize).copied().unwrap_or(false) {
                    continue;
                }
                for ni in 0..n {
                    let v = dist[(bi * n + ni) * p + row];
                    let better = match &self.best[k] {
                        Some(best) => v < best.dist_sq,
                        None => true,
                    };
                    if better {
                        self.best[k] = Some(NearestPatch {
                            dist_sq: v,
                            image_index: self.seen + bi,
                            patch: ni,
                            vector: z[(bi * n + ni) * d..(bi * n + ni + 1) * d].to_vec(),
                        });
                    }
                }
            }
        }
        self.seen += b;
        Ok(())
    }

    /// The result per row (`None` where no allowed image was seen).
    pub fn finish(self) -> Vec<(usize, Option<NearestPatch>)> {
        self.rows.into_iter().zip(self.best).collect()
    }
}

/// What [`scan_distances`] hands each batch to: latent patches, squared distances, labels.
pub(crate) type DistanceVisitor<'a> = dyn FnMut(&Tensor, &Tensor, &[u32]) -> Result<()> + 'a;

/// One pass over `source` (in its order): for each batch, the latent patches `(b, n, d)`,
/// their squared distances to every prototype `(b, n, P)` and the labels go to `visit`.
/// Returns the feature map's `(height, width)`; `progress(done, total)` counts batches.
pub(crate) fn scan_distances(
    model: &ProtoTree,
    source: &mut dyn BatchSource,
    progress: &mut dyn FnMut(usize, usize),
    visit: &mut DistanceVisitor<'_>,
) -> Result<(usize, usize)> {
    let prototypes = model.prototypes()?;
    let total = source.num_batches();
    let mut fmap = (0, 0);
    for (i, batch) in source.batches(0).enumerate() {
        let batch = batch?;
        let labels = batch
            .labels
            .to_dtype(candle_core::DType::U32)?
            .to_vec1::<u32>()?;
        let latent = model.latent(&batch.images, false)?;
        fmap = (latent.height, latent.width);
        let dist_sq = squared_distances(&latent.patches, &prototypes)?;
        visit(&latent.patches, &dist_sq, &labels)?;
        progress(i + 1, total);
    }
    Ok(fmap)
}

/// Projects every decision prototype of `model` onto its nearest allowed training patch
/// and returns one record per decision node. `image_paths[i]` names image `i` of
/// `source` (which must not shuffle). `progress(done, total)` counts batches.
pub fn project(
    model: &mut ProtoTree,
    source: &mut dyn BatchSource,
    image_paths: &[String],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<ProjectionRecord>> {
    let topo = model.topology().clone();
    let k = model.num_classes();
    let leaf_top = prototree_tree::inference::leaf_top_classes(&model.leaves().distributions()?)?;
    let allowed = allowed_classes(&topo, &leaf_top, k);
    let mut search = NearestPatchSearch::new(topo.decision_rows(), allowed);
    let prototypes = model.prototypes()?;
    let (fmap_h, fmap_w) =
        scan_distances(model, source, progress, &mut |patches, dist_sq, labels| {
            search.add(patches, dist_sq, labels)
        })?;
    let mut values = prototypes.to_vec2::<f32>()?;
    let mut records = Vec::new();
    for (row, best) in search.finish() {
        let Some(best) = best else {
            continue; // no allowed image: the prototype keeps its learnt value
        };
        let path = image_paths.get(best.image_index).cloned().ok_or_else(|| {
            Error::Invalid(format!(
                "projection image {} has no path ({} paths given)",
                best.image_index,
                image_paths.len()
            ))
        })?;
        let w = fmap_w.max(1);
        records.push(ProjectionRecord {
            node: topo.node_id(row),
            row: row as u32,
            image_index: best.image_index as u64,
            image_path: path,
            patch_row: (best.patch / w) as u32,
            patch_col: (best.patch % w) as u32,
            fmap_height: fmap_h as u32,
            fmap_width: fmap_w as u32,
            distance: (f64::from(best.dist_sq) + DISTANCE_EPS).sqrt() as f32,
        });
        values[row] = best.vector;
    }
    let (p, d) = (values.len(), values.first().map(Vec::len).unwrap_or(0));
    let flat: Vec<f32> = values.into_iter().flatten().collect();
    model.set_prototypes(&Tensor::from_vec(flat, (p, d), model.device())?)?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn nearest_patch_respects_the_class_constraint() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        // Two images of 3 one-dimensional patches; one prototype at 1.0.
        let patches = Tensor::new(&[[[0.9f32], [3.0], [5.0]], [[1.0], [0.0], [2.0]]], &dev)?;
        let protos = Tensor::new(&[[1.0f32]], &dev)?;
        let d = squared_distances(&patches, &protos)?;
        // Any class allowed: image 1, patch 0 (distance 0).
        let mut s = NearestPatchSearch::new(vec![0], vec![vec![true, true]]);
        s.add(&patches, &d, &[0, 1])?;
        let (_, best) = s.finish().remove(0);
        let best = best.unwrap();
        assert_eq!((best.image_index, best.patch), (1, 0));
        assert_eq!(best.vector, vec![1.0]);
        // Only class 0 allowed: image 0, patch 0 (0.9).
        let mut s = NearestPatchSearch::new(vec![0], vec![vec![true, false]]);
        s.add(&patches, &d, &[0, 1])?;
        // A second batch continues the image numbering.
        s.add(&patches, &d, &[1, 0])?;
        let best = s.finish().remove(0).1.unwrap();
        assert_eq!((best.image_index, best.patch), (3, 0));
        assert!((best.dist_sq - 0.0).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn allowed_classes_follow_the_subtrees() -> anyhow::Result<()> {
        let topo = Topology::complete(2)?;
        let a = allowed_classes(&topo, &[0, 1, 2, 2], 3);
        assert_eq!(a[0], vec![true, true, true]);
        assert_eq!(a[1], vec![true, true, false]);
        assert_eq!(a[2], vec![false, false, true]);
        Ok(())
    }
}
