//! Prototype projection (spec §4): each decision node's prototype becomes its nearest
//! latent patch among the projection images whose label is one of the classes its subtree
//! predicts (the reference's class constraint). Distances for every prototype and patch of
//! a batch come from one matrix product; the search keeps running minima (the first
//! occurrence wins ties, as the reference's strict `<`).
//!
//! [`ProjectionRule::Specific`] (not the reference's) chooses among the few nearest
//! patches (one per image) the one that best tells the node's two subtrees apart: the
//! largest mean similarity over the training images of the classes of its present (right)
//! subtree minus that over the classes of its absent (left) subtree, among the candidates
//! still close to the prototype. A node asks "does the image contain this?"; the answer
//! should be yes for one side and no for the other, and the patch shown should be what
//! makes it so.

use candle_core::Tensor;
use prototree_tree::distance::{squared_distances, DISTANCE_EPS};
use prototree_tree::io::ProjectionRecord;
use prototree_tree::topology::Topology;
use prototree_tree::{BatchSource, ProtoTree};

use crate::{Error, Result};

/// For each branch (heap order), which classes its projection may come from: the top
/// classes of the reachable leaves below it.
pub fn allowed_classes(topo: &Topology, leaf_top: &[usize], num_classes: usize) -> Vec<Vec<bool>> {
    let mut allowed = subtree_classes(topo, leaf_top, num_classes);
    allowed.truncate(topo.num_branches());
    allowed
}

/// For each node (heap order, branches and leaves), the top classes of the reachable
/// leaves below it (none for an unreachable node).
fn subtree_classes(topo: &Topology, leaf_top: &[usize], num_classes: usize) -> Vec<Vec<bool>> {
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

/// Running nearest-patch search over batches, for the prototypes in `rows`: per row the
/// `keep` nearest allowed patches, at most one per image (its nearest), nearest first.
#[derive(Debug, Clone)]
pub struct NearestPatchSearch {
    rows: Vec<usize>,
    allowed: Vec<Vec<bool>>,
    keep: usize,
    best: Vec<Vec<NearestPatch>>,
    seen: usize,
}

impl NearestPatchSearch {
    /// A search for the nearest patch of prototype rows `rows`; `allowed[row][class]` is
    /// the class constraint.
    pub fn new(rows: Vec<usize>, allowed: Vec<Vec<bool>>) -> Self {
        Self::keeping(rows, allowed, 1)
    }

    /// A search keeping the `keep` nearest patches of different images per row (at least
    /// one).
    pub fn keeping(rows: Vec<usize>, allowed: Vec<Vec<bool>>, keep: usize) -> Self {
        let n = rows.len();
        Self {
            rows,
            allowed,
            keep: keep.max(1),
            best: vec![Vec::new(); n],
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
                // The image's nearest patch (the first on ties; NaN distances never win).
                let mut nearest: Option<(usize, f32)> = None;
                for ni in 0..n {
                    let v = dist[(bi * n + ni) * p + row];
                    if !v.is_nan() && nearest.is_none_or(|(_, best)| v < best) {
                        nearest = Some((ni, v));
                    }
                }
                let Some((ni, v)) = nearest else { continue };
                let list = &mut self.best[k];
                // After every kept patch at most as far (earlier images win ties).
                let at = list.partition_point(|kept| kept.dist_sq <= v);
                if at >= self.keep {
                    continue;
                }
                list.insert(
                    at,
                    NearestPatch {
                        dist_sq: v,
                        image_index: self.seen + bi,
                        patch: ni,
                        vector: z[(bi * n + ni) * d..(bi * n + ni + 1) * d].to_vec(),
                    },
                );
                list.truncate(self.keep);
            }
        }
        self.seen += b;
        Ok(())
    }

    /// The nearest patch per row (`None` where no allowed image was seen).
    pub fn finish(self) -> Vec<(usize, Option<NearestPatch>)> {
        self.rows
            .into_iter()
            .zip(self.best)
            .map(|(row, list)| (row, list.into_iter().next()))
            .collect()
    }

    /// The kept patches per row, nearest first (empty where no allowed image was seen).
    pub fn finish_all(self) -> Vec<(usize, Vec<NearestPatch>)> {
        self.rows.into_iter().zip(self.best).collect()
    }
}

/// How [`project_with`] chooses each prototype's training patch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProjectionRule {
    /// The nearest allowed patch (the reference's projection).
    Nearest,
    /// Among the `candidates` nearest allowed patches (one per image) whose similarity to
    /// the prototype is at least `min_similarity_ratio` times the nearest one's, the one
    /// with the largest mean similarity over the images of the present subtree's classes
    /// minus that over the absent subtree's classes (module doc).
    Specific {
        /// Nearest patches of different images considered (at least 1).
        candidates: usize,
        /// Least similarity to the prototype, as a share of the nearest patch's, in (0, 1].
        min_similarity_ratio: f32,
    },
}

/// [`ProjectionRule::SPECIFIC`]'s candidates.
pub const SPECIFIC_CANDIDATES: usize = 20;
/// [`ProjectionRule::SPECIFIC`]'s least similarity ratio.
pub const SPECIFIC_MIN_SIMILARITY: f32 = 0.5;

impl std::fmt::Display for ProjectionRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProjectionRule::Nearest => write!(f, "nearest"),
            ProjectionRule::Specific {
                candidates,
                min_similarity_ratio,
            } => write!(
                f,
                "specific ({candidates} candidates, at least {min_similarity_ratio} of the nearest's similarity)"
            ),
        }
    }
}

impl ProjectionRule {
    /// The specific rule with its defaults: [`SPECIFIC_CANDIDATES`] candidates, at least
    /// [`SPECIFIC_MIN_SIMILARITY`] of the nearest patch's similarity.
    pub const SPECIFIC: ProjectionRule = ProjectionRule::Specific {
        candidates: SPECIFIC_CANDIDATES,
        min_similarity_ratio: SPECIFIC_MIN_SIMILARITY,
    };
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
    scan_distances_to(model, &model.prototypes()?, source, progress, visit)
}

/// [`scan_distances`] to the vectors `targets` `(P, d)` instead of the prototypes.
fn scan_distances_to(
    model: &ProtoTree,
    targets: &Tensor,
    source: &mut dyn BatchSource,
    progress: &mut dyn FnMut(usize, usize),
    visit: &mut DistanceVisitor<'_>,
) -> Result<(usize, usize)> {
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
        let dist_sq = squared_distances(&latent.patches, targets)?;
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
    project_with(
        model,
        source,
        image_paths,
        ProjectionRule::Nearest,
        progress,
    )
}

/// [`project`] with a choice of rule; [`ProjectionRule::Specific`] makes a second pass
/// over `source` (progress counts both passes' batches).
pub fn project_with(
    model: &mut ProtoTree,
    source: &mut dyn BatchSource,
    image_paths: &[String],
    rule: ProjectionRule,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<ProjectionRecord>> {
    let topo = model.topology().clone();
    let k = model.num_classes();
    let leaf_top = prototree_tree::inference::leaf_top_classes(&model.leaves().distributions()?)?;
    let classes = subtree_classes(&topo, &leaf_top, k);
    let allowed: Vec<Vec<bool>> = classes[..topo.num_branches()].to_vec();
    let keep = match rule {
        ProjectionRule::Nearest => 1,
        ProjectionRule::Specific { candidates, .. } => candidates.max(1),
    };
    let mut search = NearestPatchSearch::keeping(topo.decision_rows(), allowed, keep);
    let prototypes = model.prototypes()?;
    let passes = if keep > 1 { 2 } else { 1 };
    let total = source.num_batches() * passes;
    let (fmap_h, fmap_w) = scan_distances(
        model,
        source,
        &mut |done, _| progress(done, total),
        &mut |patches, dist_sq, labels| search.add(patches, dist_sq, labels),
    )?;
    let kept = search.finish_all();
    let chosen: Vec<(usize, Option<NearestPatch>)> = match rule {
        ProjectionRule::Nearest => kept
            .into_iter()
            .map(|(row, list)| (row, list.into_iter().next()))
            .collect(),
        ProjectionRule::Specific {
            candidates,
            min_similarity_ratio,
        } => {
            if candidates == 0 {
                return Err(Error::Invalid(
                    "projection: the specific rule needs at least one candidate".into(),
                ));
            }
            if !(min_similarity_ratio > 0.0 && min_similarity_ratio <= 1.0) {
                return Err(Error::Invalid(format!(
                    "projection: the least similarity ratio must be in (0, 1], got {min_similarity_ratio}"
                )));
            }
            let offset = source.num_batches();
            let specificity =
                candidate_specificity(model, source, &kept, &classes, &mut |done, _| {
                    progress(offset + done, total)
                })?;
            kept.into_iter()
                .zip(specificity)
                .map(|((row, list), scores)| {
                    let dist_sq: Vec<f32> = list.iter().map(|c| c.dist_sq).collect();
                    let best = most_specific(&dist_sq, &scores, min_similarity_ratio);
                    (row, best.and_then(|i| list.into_iter().nth(i)))
                })
                .collect()
        }
    };
    let mut values = prototypes.to_vec2::<f32>()?;
    let mut records = Vec::new();
    for (row, best) in chosen {
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

/// Of candidates at squared distances `dist_sq` (nearest first) with specificity
/// `scores`, the index of the one with the largest score among those whose similarity is
/// at least `min_similarity_ratio` times the nearest one's (the nearer on ties).
fn most_specific(dist_sq: &[f32], scores: &[f32], min_similarity_ratio: f32) -> Option<usize> {
    let nearest = similarity_of(*dist_sq.first()?);
    dist_sq
        .iter()
        .zip(scores)
        .enumerate()
        .filter(|(_, (d, _))| similarity_of(**d) >= min_similarity_ratio * nearest)
        .max_by(|(i, (_, a)), (j, (_, b))| a.total_cmp(b).then(j.cmp(i)))
        .map(|(i, _)| i)
}

/// The similarity `exp(−distance)` of a squared distance.
fn similarity_of(dist_sq: f32) -> f32 {
    (-((f64::from(dist_sq) + DISTANCE_EPS).sqrt())).exp() as f32
}

/// Per row of `kept` and each of its candidates, the mean similarity (nearest patch) over
/// the images of the classes of the row's present (right) subtree minus that over the
/// classes of its absent (left) subtree (`classes`: per heap node, its subtree's
/// classes), from one more pass over `source`. Classes on both sides count for neither.
fn candidate_specificity(
    model: &ProtoTree,
    source: &mut dyn BatchSource,
    kept: &[(usize, Vec<NearestPatch>)],
    classes: &[Vec<bool>],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<f32>>> {
    let d = model.prototypes()?.dim(1)?;
    let flat: Vec<f32> = kept
        .iter()
        .flat_map(|(_, list)| list.iter().flat_map(|c| c.vector.iter().copied()))
        .collect();
    let m = flat.len() / d.max(1);
    let num_classes = model.num_classes();
    // sums[class][candidate], counts[class]
    let mut sums = vec![vec![0f64; m]; num_classes];
    let mut counts = vec![0usize; num_classes];
    if m > 0 {
        let candidates = Tensor::from_vec(flat, (m, d), model.device())?;
        scan_distances_to(
            model,
            &candidates,
            source,
            progress,
            &mut |_, dist_sq, labels| {
                for (label, row) in labels.iter().zip(dist_sq.min(1)?.to_vec2::<f32>()?) {
                    let Some(sum) = sums.get_mut(*label as usize) else {
                        continue;
                    };
                    counts[*label as usize] += 1;
                    for (s, v) in sum.iter_mut().zip(row) {
                        *s += f64::from(similarity_of(v));
                    }
                }
                Ok(())
            },
        )?;
    }
    let mut start = 0;
    let mut out = Vec::with_capacity(kept.len());
    for (row, list) in kept {
        let side = |child: usize| -> Vec<bool> {
            classes
                .get(child)
                .cloned()
                .unwrap_or_else(|| vec![false; num_classes])
        };
        let (left, right) = (side(2 * row + 1), side(2 * row + 2));
        let mean_over = |only: &dyn Fn(usize) -> bool, c: usize| -> f64 {
            let (mut total, mut n) = (0f64, 0usize);
            for k in (0..num_classes).filter(|&k| only(k) && counts[k] > 0) {
                total += sums[k][c] / counts[k] as f64;
                n += 1;
            }
            if n == 0 {
                0.0
            } else {
                total / n as f64
            }
        };
        let scores = (start..start + list.len())
            .map(|c| {
                let present = mean_over(&|k| right[k] && !left[k], c);
                let absent = mean_over(&|k| left[k] && !right[k], c);
                (present - absent) as f32
            })
            .collect();
        start += list.len();
        out.push(scores);
    }
    Ok(out)
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

    #[test]
    fn the_search_keeps_the_nearest_patch_of_several_images() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        // Three images of two one-dimensional patches; one prototype at 0.
        let patches = Tensor::new(&[[[3.0f32], [1.0]], [[0.5], [0.4]], [[1.0], [9.0]]], &dev)?;
        let d = squared_distances(&patches, &Tensor::new(&[[0.0f32]], &dev)?)?;
        let mut s = NearestPatchSearch::keeping(vec![0], vec![vec![true]], 2);
        s.add(&patches, &d, &[0, 0, 0])?;
        let (_, kept) = s.finish_all().remove(0);
        // Image 1's nearest patch (0.4), then image 0's (1.0; image 2's 1.0 ties and
        // comes later): one patch per image.
        let got: Vec<(usize, usize)> = kept.iter().map(|c| (c.image_index, c.patch)).collect();
        assert_eq!(got, [(1, 1), (0, 1)]);
        Ok(())
    }

    #[test]
    fn the_most_specific_candidate_close_enough_wins() {
        // Similarities e^-0 = 1, e^-0.5 = 0.61, e^-1 = 0.37 (squared distances 0, .25, 1).
        let dist_sq = [0.0, 0.25, 1.0];
        // Half the nearest's similarity: candidates 0 and 1; 1 is the more specific.
        assert_eq!(most_specific(&dist_sq, &[0.1, 0.3, 0.9], 0.5), Some(1));
        // Any similarity: candidate 2.
        assert_eq!(most_specific(&dist_sq, &[0.1, 0.3, 0.9], 0.1), Some(2));
        // Only the nearest itself qualifies at ratio 1.
        assert_eq!(most_specific(&dist_sq, &[0.1, 0.3, 0.9], 1.0), Some(0));
        // Ties go to the nearer candidate.
        assert_eq!(most_specific(&dist_sq, &[0.3, 0.3, 0.3], 0.1), Some(0));
        assert_eq!(most_specific(&[], &[], 0.5), None);
    }

    /// Random images in one unshuffled batch of labels `0, 1, 2, 0, 1, 2, ...`.
    struct RandomImages(Tensor, Tensor);

    impl BatchSource for RandomImages {
        fn num_batches(&self) -> usize {
            1
        }
        fn batches(
            &mut self,
            _epoch: usize,
        ) -> Box<dyn Iterator<Item = prototree_tree::Result<prototree_tree::Batch>> + '_> {
            Box::new(std::iter::once(Ok(prototree_tree::Batch {
                images: self.0.clone(),
                labels: self.1.clone(),
            })))
        }
    }

    #[test]
    fn specific_projection_picks_a_near_patch_and_one_candidate_is_the_nearest(
    ) -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let images = Tensor::randn(0f32, 1.0, (9, 3, 32, 32), &dev)?;
        let labels = Tensor::new(&[0u32, 1, 2, 0, 1, 2, 0, 1, 2], &dev)?;
        let paths: Vec<String> = (0..9).map(|i| format!("img{i}.png")).collect();
        let project_by = |rule: ProjectionRule| -> anyhow::Result<Vec<ProjectionRecord>> {
            // The same seeded tree each time.
            let mut model = prototree_tree::testing::small_cnn_tree(2, 4, 3, 1)?;
            model.set_leaves(prototree_tree::Leaves::from_params(Tensor::new(
                &[[5f32, 0., 0.], [0., 5., 0.], [0., 0., 5.], [5., 0., 0.]],
                &Device::Cpu,
            )?)?)?;
            let mut source = RandomImages(images.clone(), labels.clone());
            Ok(project_with(
                &mut model,
                &mut source,
                &paths,
                rule,
                &mut |_, _| {},
            )?)
        };
        let nearest = project_by(ProjectionRule::Nearest)?;
        let one = project_by(ProjectionRule::Specific {
            candidates: 1,
            min_similarity_ratio: 0.5,
        })?;
        assert_eq!(nearest, one);
        let specific = project_by(ProjectionRule::SPECIFIC)?;
        assert_eq!(specific.len(), nearest.len());
        for (s, n) in specific.iter().zip(&nearest) {
            assert_eq!(s.node, n.node);
            // Never nearer than the nearest, never less than half as similar.
            assert!(s.distance >= n.distance - 1e-6);
            assert!((-s.distance).exp() >= 0.5 * (-n.distance).exp() - 1e-6);
        }
        let bad = ProjectionRule::Specific {
            candidates: 3,
            min_similarity_ratio: 0.0,
        };
        assert!(project_by(bad).is_err());
        let none = ProjectionRule::Specific {
            candidates: 0,
            min_similarity_ratio: 0.5,
        };
        assert!(project_by(none).is_err());
        Ok(())
    }
}
