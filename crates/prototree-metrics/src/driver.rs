//! The driver: every explanation metric of a saved model on a data set's test split.
//!
//! One pass over the test images computes each prototype's similarity map per image, its
//! nearest patch, that patch's box and the annotated parts inside it; a second pass with
//! input noise gives stability; further batches of edited images give deletion and
//! perturbation effects. Projected prototypes are located in their source images.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use prototree_data::{
    Augmentation, CubDataset, Loader, LoaderConfig, Normalization, Sample, Split,
};
use prototree_tree::distance::{squared_distances, DISTANCE_EPS};
use prototree_tree::geometry::{patch_box, PixelBox};
use prototree_tree::inference::{greedy_path, leaf_top_classes};
use prototree_tree::topology::BranchState;
use prototree_tree::{ProtoTree, SavedModel};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::annotation::Annotation;
use crate::consistency::{consistency, purity, stability};
use crate::dataset::AnnotationSource;
use crate::discriminative::{classes_below, discriminative_share, separating_parts, variant_table};
use crate::faithfulness::{
    distinct_prototypes_per_class, prototypes_per_class_in_tree, summarize_deletions, Deletion,
    PRESENT_THRESHOLD,
};
use crate::localization::{localization_shares, locate, source_box};
use crate::metrics::{
    ExplanationMetrics, MetricsConfig, PerturbationDrop, Phase, PrototypeMetrics, SourceRegion,
};
use crate::parts::{PartSet, Region, RegionLabel};
use crate::perturb::{perturb, standard_normal, Area, FloatImage, Perturbation};
use crate::relevance::{attribution_map, energy_share, pointing_game};
use crate::{Error, Result};

/// One prototype's activation on one image.
#[derive(Debug, Clone, Copy)]
struct Activation {
    similarity: f32,
    cell: usize,
    parts: PartSet,
}

/// A candidate among a prototype's top activations.
#[derive(Debug, Clone)]
struct TopActivation {
    similarity: f32,
    image: usize,
    map: Vec<f32>,
}

/// One decision on an image's greedy path.
#[derive(Debug, Clone, Copy)]
struct Step {
    row: usize,
    similarity: f32,
    present: bool,
}

/// Greedy result of one forward pass over one image.
#[derive(Debug, Clone)]
struct Routed {
    soft_class: usize,
    greedy_class: usize,
    steps: Vec<Step>,
    routing: Vec<f32>,
}

/// Latent similarity maps and routing of a batch of images.
struct BatchResult {
    /// Per image and prototype row (all rows), the similarity map over the `fh·fw` cells:
    /// `(b, P, n)` row-major.
    sims: Vec<f32>,
    num_rows: usize,
    cells: usize,
    fh: usize,
    fw: usize,
    routed: Vec<Routed>,
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// Runs the model on normalised CHW images (`b` of them, side `size`).
fn run_batch(
    model: &ProtoTree,
    chw: Vec<f32>,
    b: usize,
    size: usize,
    leaf_top: &[usize],
    device: &Device,
) -> Result<BatchResult> {
    let images = Tensor::from_vec(chw, (b, 3, size, size), device)?;
    let latent = model.latent(&images, false)?;
    let out = model.forward_latent(&latent)?;
    let probs = out.probabilities.to_vec2::<f32>()?;
    let routing = out.routing.to_vec2::<f32>()?;
    let topo = model.topology();
    let mut routed = Vec::with_capacity(b);
    for (p, r) in probs.iter().zip(routing) {
        let (leaf, path) = greedy_path(topo, &r);
        let greedy_class = leaf_top
            .get(leaf)
            .copied()
            .ok_or_else(|| Error::Invalid(format!("leaf {leaf} has no class distribution")))?;
        routed.push(Routed {
            soft_class: argmax(p),
            greedy_class,
            steps: path
                .iter()
                .map(|s| Step {
                    row: s.heap,
                    similarity: s.similarity,
                    present: s.present,
                })
                .collect(),
            routing: r,
        });
    }
    let protos = model.prototypes()?;
    let dist_sq = squared_distances(&latent.patches, &protos)?;
    let (_, n, num_rows) = dist_sq.dims3()?;
    // (b, n, P) → (b, P, n) so each map is contiguous.
    let sims: Vec<f32> = dist_sq
        .transpose(1, 2)?
        .contiguous()?
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|d| (-(f64::from(d) + DISTANCE_EPS).sqrt()).exp() as f32)
        .collect();
    Ok(BatchResult {
        sims,
        num_rows,
        cells: n,
        fh: latent.height,
        fw: latent.width,
        routed,
    })
}

/// `k` indices spread evenly over `0..n` (all when `k ≥ n`).
fn spread(n: usize, k: usize) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    (0..k).map(|i| i * n / k).collect()
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| s / n as f64)
}

fn share(hits: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        hits as f64 / total as f64
    }
}

fn classes_of(mask: &[bool]) -> Vec<usize> {
    mask.iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(c, _)| c)
        .collect()
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

/// [`explanation_metrics_with`] with the default settings.
pub fn explanation_metrics(
    saved: &SavedModel,
    data_dir: &Path,
    device: &Device,
    progress: &mut dyn FnMut(Phase, usize, usize),
) -> Result<ExplanationMetrics> {
    explanation_metrics_with(saved, data_dir, &MetricsConfig::default(), device, progress)
}

/// Measures the explanations of `saved` (ideally pruned and projected) on the test split
/// of the CUB-layout data set in `data_dir`, which needs part annotations (a part mask or
/// keypoints). `progress(phase, done, total)` reports each [`Phase`].
pub fn explanation_metrics_with(
    saved: &SavedModel,
    data_dir: &Path,
    cfg: &MetricsConfig,
    device: &Device,
    progress: &mut dyn FnMut(Phase, usize, usize),
) -> Result<ExplanationMetrics> {
    cfg.check()?;
    let model = &saved.model;
    let meta = &saved.meta;
    let ds = CubDataset::open(data_dir)?;
    let num_classes = model.num_classes();
    if ds.num_classes() != num_classes {
        return Err(Error::Invalid(format!(
            "{}: the data set has {} classes but the model was trained on {num_classes}",
            data_dir.display(),
            ds.num_classes()
        )));
    }
    let source = AnnotationSource::open(&ds)?;
    let part_names = source.part_names().to_vec();
    let pre = meta.preprocessing;
    let size = pre.image_size;
    let side = size as usize;
    let norm = Normalization {
        mean: pre.mean,
        std: pre.std,
    };
    let topo = model.topology().clone();
    let leaf_top = leaf_top_classes(&model.leaves().distributions()?)?;
    let below = classes_below(&topo, &leaf_top, num_classes);
    let rows: Vec<usize> = (0..topo.num_branches())
        .filter(|h| topo.branch_state(*h) == BranchState::Decision)
        .collect();

    // Test images and their annotations.
    let all_test = ds.samples(Split::Test);
    let picks = spread(all_test.len(), cfg.max_images.unwrap_or(usize::MAX));
    let samples: Vec<Sample> = picks.iter().map(|&i| all_test[i].clone()).collect();
    if samples.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no test images",
            data_dir.display()
        )));
    }
    let n_img = samples.len();
    let loader_cfg = LoaderConfig {
        batch_size: cfg.batch_size,
        image_size: size,
        crop_to_bbox: false,
        augmentation: Augmentation::None,
        normalization: norm,
        shuffle: false,
        drop_last: false,
    };
    progress(Phase::LoadImages, 0, n_img);
    let loader = Loader::new(samples.clone(), loader_cfg, &mut |_, _| {})?;
    let mut anns: Vec<Annotation> = Vec::with_capacity(n_img);
    for (i, s) in samples.iter().enumerate() {
        anns.push(source.load(&ds, s, size)?);
        if (i + 1) % 64 == 0 || i + 1 == n_img {
            progress(Phase::LoadImages, i + 1, n_img);
        }
    }
    let visible: Vec<PartSet> = anns.iter().map(Annotation::visible_parts).collect();
    let labels: Vec<usize> = samples.iter().map(|s| s.class_index).collect();
    let image = |i: usize| -> Result<FloatImage> {
        loader
            .image(i)
            .map(FloatImage::from_rgb)
            .ok_or_else(|| Error::Invalid(format!("test image {i} was not loaded")))
    };
    let chw_of = |imgs: &[FloatImage]| -> Vec<f32> {
        let plane = 3 * side * side;
        let mut out = vec![0f32; imgs.len() * plane];
        for (img, o) in imgs.iter().zip(out.chunks_exact_mut(plane)) {
            img.write_chw(&norm, o);
        }
        out
    };
    let chunks: Vec<Vec<usize>> = (0..n_img)
        .collect::<Vec<_>>()
        .chunks(cfg.batch_size)
        .map(<[usize]>::to_vec)
        .collect();

    // Pass 1: activations, greedy paths, top-k maps.
    let n_rows = rows.len();
    let mut acts: Vec<Vec<Activation>> = Vec::with_capacity(n_img);
    let mut routed: Vec<Routed> = Vec::with_capacity(n_img);
    let mut top: Vec<Vec<TopActivation>> = vec![Vec::new(); n_rows];
    let (mut fh, mut fw) = (1usize, 1usize);
    progress(Phase::Activations, 0, chunks.len());
    for (ci, chunk) in chunks.iter().enumerate() {
        let imgs: Vec<FloatImage> = chunk.iter().map(|&i| image(i)).collect::<Result<_>>()?;
        let res = run_batch(model, chw_of(&imgs), chunk.len(), side, &leaf_top, device)?;
        (fh, fw) = (res.fh, res.fw);
        for (bi, &i) in chunk.iter().enumerate() {
            let mut per_row = Vec::with_capacity(n_rows);
            for (ri, &row) in rows.iter().enumerate() {
                let off = (bi * res.num_rows + row) * res.cells;
                let map = &res.sims[off..off + res.cells];
                let cell = argmax(map);
                let b = patch_box(
                    (cell / fw) as u32,
                    (cell % fw) as u32,
                    fh as u32,
                    fw as u32,
                    size,
                    size,
                );
                let region = anns[i].region(b, cfg.min_part_share);
                let similarity = map[cell];
                per_row.push(Activation {
                    similarity,
                    cell,
                    parts: region.parts,
                });
                let t = &mut top[ri];
                if t.len() < cfg.top_k || t.last().is_some_and(|l| similarity > l.similarity) {
                    let pos = t
                        .iter()
                        .position(|x| similarity > x.similarity)
                        .unwrap_or(t.len());
                    t.insert(
                        pos,
                        TopActivation {
                            similarity,
                            image: i,
                            map: map.to_vec(),
                        },
                    );
                    t.truncate(cfg.top_k);
                }
            }
            acts.push(per_row);
        }
        routed.extend(res.routed);
        progress(Phase::Activations, ci + 1, chunks.len());
    }
    let box_of = |cell: usize| -> PixelBox {
        patch_box(
            (cell / fw) as u32,
            (cell % fw) as u32,
            fh as u32,
            fw as u32,
            size,
            size,
        )
    };

    // Pass 2: the same under seeded Gaussian noise on the normalised input.
    let mut noisy: Vec<Vec<PartSet>> = Vec::with_capacity(n_img);
    progress(Phase::Noise, 0, chunks.len());
    for (ci, chunk) in chunks.iter().enumerate() {
        let imgs: Vec<FloatImage> = chunk.iter().map(|&i| image(i)).collect::<Result<_>>()?;
        let mut chw = chw_of(&imgs);
        let plane = 3 * side * side;
        for (o, &i) in chw.chunks_exact_mut(plane).zip(chunk) {
            let mut rng = ChaCha8Rng::seed_from_u64(
                cfg.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            for v in o.iter_mut() {
                *v += (cfg.noise_sigma * standard_normal(&mut rng))
                    .clamp(-cfg.noise_clip, cfg.noise_clip);
            }
        }
        let res = run_batch(model, chw, chunk.len(), side, &leaf_top, device)?;
        for (bi, &i) in chunk.iter().enumerate() {
            noisy.push(
                rows.iter()
                    .map(|&row| {
                        let off = (bi * res.num_rows + row) * res.cells;
                        let cell = argmax(&res.sims[off..off + res.cells]);
                        anns[i].region(box_of(cell), cfg.min_part_share).parts
                    })
                    .collect(),
            );
        }
        progress(Phase::Noise, ci + 1, chunks.len());
    }

    // Deletion: fill the matched patch of each "present" decision with the mean colour.
    let row_index: HashMap<usize, usize> =
        rows.iter().enumerate().map(|(ri, &r)| (r, ri)).collect();
    let mut jobs: Vec<(usize, usize, f32)> = Vec::new(); // (image, row, similarity before)
    for (i, r) in routed.iter().enumerate() {
        for s in r.steps.iter().filter(|s| s.present) {
            jobs.push((i, s.row, s.similarity));
        }
    }
    let job_chunks: Vec<&[(usize, usize, f32)]> = jobs.chunks(cfg.batch_size).collect();
    let mut deletions = Vec::with_capacity(jobs.len());
    progress(Phase::Deletion, 0, job_chunks.len());
    for (ci, chunk) in job_chunks.iter().enumerate() {
        let mut imgs = Vec::with_capacity(chunk.len());
        for &(i, row, _) in chunk.iter() {
            let ri = row_index[&row];
            let b = box_of(acts[i][ri].cell);
            imgs.push(perturb(
                &image(i)?,
                Perturbation::MeanFill,
                b,
                Area::Inside,
                0,
            ));
        }
        let res = run_batch(model, chw_of(&imgs), chunk.len(), side, &leaf_top, device)?;
        for (&(i, row, before), after) in chunk.iter().zip(&res.routed) {
            deletions.push(Deletion {
                class_changed: after.greedy_class != routed[i].greedy_class,
                similarity_before: before,
                similarity_after: after.routing[row],
            });
        }
        progress(Phase::Deletion, ci + 1, job_chunks.len());
    }
    let deletion = summarize_deletions(&deletions);

    // Perturbation analysis on each prototype's top-k images.
    let mut pjobs: Vec<(usize, usize, Perturbation, Area, f32)> = Vec::new();
    for (ri, t) in top.iter().enumerate() {
        for a in t {
            for p in Perturbation::ANALYSIS {
                for area in [Area::Inside, Area::Outside] {
                    pjobs.push((ri, a.image, p, area, a.similarity));
                }
            }
        }
    }
    let pjob_chunks: Vec<_> = pjobs.chunks(cfg.batch_size).collect();
    // drops[ri][perturbation][image slot] = (inside, outside)
    let mut drops: HashMap<(usize, Perturbation, usize), (f64, f64)> = HashMap::new();
    progress(Phase::Perturbation, 0, pjob_chunks.len());
    for (ci, chunk) in pjob_chunks.iter().enumerate() {
        let mut imgs = Vec::with_capacity(chunk.len());
        for &(ri, i, p, area, _) in chunk.iter() {
            let b = box_of(acts[i][ri].cell);
            let seed = cfg.seed ^ ((i as u64) << 20) ^ ((ri as u64) << 4) ^ 0xbeef;
            imgs.push(perturb(&image(i)?, p, b, area, seed));
        }
        let res = run_batch(model, chw_of(&imgs), chunk.len(), side, &leaf_top, device)?;
        for (&(ri, i, p, area, before), after) in chunk.iter().zip(&res.routed) {
            let drop = f64::from(before - after.routing[rows[ri]]);
            let e = drops.entry((ri, p, i)).or_insert((0.0, 0.0));
            match area {
                Area::Inside => e.0 = drop,
                Area::Outside => e.1 = drop,
            }
        }
        progress(Phase::Perturbation, ci + 1, pjob_chunks.len());
    }

    // Where projected prototypes come from.
    let all = ds.samples(Split::All);
    let by_path: HashMap<String, &Sample> = all
        .iter()
        .map(|s| (s.path.display().to_string(), s))
        .collect();
    let by_tail: HashMap<String, &Sample> = all.iter().map(|s| (path_tail(&s.path), s)).collect();
    let mut sources: HashMap<usize, SourceRegion> = HashMap::new();
    for rec in saved.projections() {
        let row = rec.row as usize;
        if !row_index.contains_key(&row) {
            continue;
        }
        let Some(sample) = find_sample(&by_path, &by_tail, &rec.image_path) else {
            continue;
        };
        let ann = source.load(&ds, sample, size)?;
        let b = source_box(rec, size);
        let region = locate(&ann, rec, cfg.min_part_share);
        if region.label == RegionLabel::Unknown {
            continue;
        }
        sources.insert(
            row,
            SourceRegion {
                image_path: rec.image_path.clone(),
                image_box: b,
                part_name: region.label.part().and_then(|p| part_names.get(p).cloned()),
                region,
            },
        );
    }
    let table = source
        .truth()
        .and_then(|t| variant_table(t, &part_names, num_classes));

    // Per prototype.
    let mut prototypes = Vec::with_capacity(n_rows);
    let mut locality = (0usize, 0usize);
    let mut all_drops: HashMap<Perturbation, Vec<(f64, f64)>> = HashMap::new();
    for (ri, &row) in rows.iter().enumerate() {
        let present = below.get(2 * row + 2).cloned().unwrap_or_default();
        let absent = below.get(2 * row + 1).cloned().unwrap_or_default();
        let served = below[row].clone();
        let on = |mask: &[bool]| -> Vec<usize> {
            (0..n_img)
                .filter(|&i| mask.get(labels[i]).copied().unwrap_or(false))
                .collect()
        };
        let present_imgs = on(&present);
        let served_imgs = on(&served);
        let gather = |imgs: &[usize]| -> (Vec<PartSet>, Vec<PartSet>) {
            (
                imgs.iter().map(|&i| acts[i][ri].parts).collect(),
                imgs.iter().map(|&i| visible[i]).collect(),
            )
        };
        let (a_p, v_p) = gather(&present_imgs);
        let (a_s, v_s) = gather(&served_imgs);
        let noisy_p: Vec<PartSet> = present_imgs.iter().map(|&i| noisy[i][ri]).collect();
        let firing: Vec<PartSet> = (0..n_img)
            .filter(|&i| acts[i][ri].similarity > PRESENT_THRESHOLD)
            .map(|i| acts[i][ri].parts)
            .collect();
        let top_parts: Vec<PartSet> = top[ri].iter().map(|t| acts[t.image][ri].parts).collect();
        let src = sources.get(&row).cloned();
        let src_part = src.as_ref().and_then(|s| s.region.label.part());
        let (mut obj_e, mut part_e, mut point) = (Vec::new(), Vec::new(), Vec::new());
        let (mut obj_area, mut part_area) = (Vec::new(), Vec::new());
        let area =
            |mask: &[bool]| mask.iter().filter(|m| **m).count() as f64 / mask.len().max(1) as f64;
        for t in &top[ri] {
            let attribution = attribution_map(&t.map, fh, fw, size, size);
            let ann = &anns[t.image];
            if let Some(mask) = ann.object_mask() {
                obj_area.push(area(&mask));
                if let Some(e) = energy_share(&attribution, &mask) {
                    obj_e.push(e);
                }
                if let Some(pg) = pointing_game(&attribution, &mask, cfg.pointing_share) {
                    point.push(pg);
                }
            }
            if let Some(mask) = src_part.and_then(|p| ann.part_mask(p)) {
                part_area.push(area(&mask));
                if let Some(e) = energy_share(&attribution, &mask) {
                    part_e.push(e);
                }
            }
        }
        let mut perturbation = Vec::new();
        for p in Perturbation::ANALYSIS {
            let pairs: Vec<(f64, f64)> = top[ri]
                .iter()
                .filter_map(|t| drops.get(&(ri, p, t.image)).copied())
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let exceeds = pairs.iter().filter(|(a, b)| a > b).count();
            locality.0 += exceeds;
            locality.1 += pairs.len();
            all_drops
                .entry(p)
                .or_default()
                .extend(pairs.iter().copied());
            perturbation.push(PerturbationDrop {
                perturbation: p,
                mean_drop_inside: mean(pairs.iter().map(|x| x.0)).unwrap_or(0.0),
                mean_drop_outside: mean(pairs.iter().map(|x| x.1)).unwrap_or(0.0),
                inside_exceeds_outside: share(exceeds, pairs.len()),
                images: pairs.len(),
            });
        }
        let separating = table
            .as_ref()
            .map(|t| separating_parts(t, &absent, &present));
        prototypes.push(PrototypeMetrics {
            node: topo.node_id(row),
            row,
            discriminative: match (&src, separating) {
                (Some(s), Some(sep)) => {
                    Some(s.region.label.part().is_some_and(|p| sep.contains(p)))
                }
                _ => None,
            },
            source: src,
            present_classes: classes_of(&present),
            served_classes: classes_of(&served),
            present_images: present_imgs.len(),
            consistency: consistency(&a_p, &v_p, cfg.consistency_threshold),
            consistency_served: consistency(&a_s, &v_s, cfg.consistency_threshold),
            stability: stability(&a_p, &noisy_p),
            firing_images: firing.len(),
            firing_purity: purity(&firing),
            top_k_purity: purity(&top_parts),
            object_energy: mean(obj_e.into_iter()),
            part_energy: mean(part_e.into_iter()),
            pointing_game: mean(point.into_iter()),
            object_area_share: mean(obj_area.into_iter()),
            part_area_share: mean(part_area.into_iter()),
            separating_parts: separating,
            perturbation,
        });
    }

    // Aggregates.
    let located: Vec<Region> = prototypes
        .iter()
        .filter_map(|p| p.source.as_ref().map(|s| s.region))
        .collect();
    let shares = localization_shares(&located);
    let frac = |f: &dyn Fn(&PrototypeMetrics) -> Option<bool>| -> f64 {
        let v: Vec<bool> = prototypes.iter().filter_map(f).collect();
        share(v.iter().filter(|x| **x).count(), v.len())
    };
    let avg = |f: &dyn Fn(&PrototypeMetrics) -> Option<f64>| -> f64 {
        mean(prototypes.iter().filter_map(f)).unwrap_or(0.0)
    };
    let disc: Vec<(Option<usize>, PartSet)> = prototypes
        .iter()
        .filter_map(|p| match (&p.source, p.separating_parts) {
            (Some(s), Some(sep)) => Some((s.region.label.part(), sep)),
            _ => None,
        })
        .collect();
    let fidelity = routed
        .iter()
        .filter(|r| r.greedy_class == r.soft_class)
        .count();
    let correct = routed
        .iter()
        .zip(&labels)
        .filter(|(r, y)| r.greedy_class == **y)
        .count();
    let paths: Vec<(usize, Vec<usize>)> = routed
        .iter()
        .map(|r| (r.greedy_class, r.steps.iter().map(|s| s.row).collect()))
        .collect();
    let mut perturbation: Vec<PerturbationDrop> = Perturbation::ANALYSIS
        .iter()
        .filter_map(|p| {
            let v = all_drops.get(p)?;
            let exceeds = v.iter().filter(|(a, b)| a > b).count();
            Some(PerturbationDrop {
                perturbation: *p,
                mean_drop_inside: mean(v.iter().map(|x| x.0)).unwrap_or(0.0),
                mean_drop_outside: mean(v.iter().map(|x| x.1)).unwrap_or(0.0),
                inside_exceeds_outside: share(exceeds, v.len()),
                images: v.len(),
            })
        })
        .collect();
    perturbation.sort_by_key(|p| p.perturbation.name());
    Ok(ExplanationMetrics {
        explanation_on_part: shares.on_part,
        explanation_on_object: shares.on_object,
        explanation_consistency: frac(&|p| p.consistency.map(|c| c.consistent)),
        explanation_consistency_served: frac(&|p| p.consistency_served.map(|c| c.consistent)),
        explanation_stability: avg(&|p| p.stability),
        explanation_discriminative_share: discriminative_share(&disc),
        explanation_firing_purity: avg(&|p| p.firing_purity.map(|s| s.share)),
        explanation_top_k_purity: avg(&|p| p.top_k_purity.map(|s| s.share)),
        explanation_object_energy: avg(&|p| p.object_energy),
        explanation_part_energy: avg(&|p| p.part_energy),
        object_area_share: avg(&|p| p.object_area_share),
        part_area_share: avg(&|p| p.part_area_share),
        explanation_pointing_game: avg(&|p| p.pointing_game),
        explanation_perturbation_locality: share(locality.0, locality.1),
        explanation_deletion_prediction_change: deletion.prediction_change_rate,
        explanation_deletion_decision_flip: deletion.decision_flip_rate,
        explanation_greedy_fidelity: share(fidelity, routed.len()),
        accuracy_greedy: share(correct, routed.len()),
        deletion,
        perturbation,
        mean_path_length: mean(routed.iter().map(|r| r.steps.len() as f64)).unwrap_or(0.0),
        distinct_prototypes_per_class: distinct_prototypes_per_class(&paths),
        prototypes_per_class_in_tree: prototypes_per_class_in_tree(&topo, &leaf_top),
        num_test_images: n_img,
        num_prototypes: n_rows,
        num_located: shares.located,
        num_discriminative_evaluated: disc.len(),
        part_source: if source.mask_has_parts() {
            "mask".into()
        } else {
            "keypoints".into()
        },
        part_names,
        config: cfg.clone(),
        prototypes,
    })
}
