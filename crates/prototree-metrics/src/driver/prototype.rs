//! The figures of one prototype: consistency, stability, purity, relevance of its
//! similarity map, perturbation drops and whether its part separates its subtrees.

use std::collections::HashMap;

use crate::annotation::Annotation;
use crate::consistency::{consistency, purity, stability};
use crate::dataset::AnnotationSource;
use crate::discriminative::{classes_below, separating_parts, variant_table};
use crate::faithfulness::PRESENT_THRESHOLD;
use crate::integrated_gradients::integrated_gradients_map;
use crate::metrics::MetricsConfig;
use crate::metrics::{PerturbationDrop, PrototypeMetrics, SourceRegion};
use crate::parts::PartSet;
use crate::perturb::Perturbation;
use crate::relevance::{attribution_map, energy_share, pointing_game};
use crate::smoothgrad::{smoothgrad_map, SmoothGrad};
use crate::Result;

use super::activations::Activations;
use super::edits::Drops;
use super::occlusion::OcclusionParts;
use super::{mean, share, TestSet};

/// What the per-prototype figures are computed from.
pub(super) struct Inputs<'a> {
    pub test: &'a TestSet<'a>,
    pub acts: &'a Activations,
    noisy: &'a [Vec<PartSet>],
    gradient: &'a OcclusionParts,
    drops: &'a Drops,
    sources: &'a HashMap<usize, SourceRegion>,
    /// Per heap node, the classes whose top leaf lies below it.
    below: Vec<Vec<bool>>,
    /// Per image, its visible parts.
    visible: Vec<PartSet>,
    /// The synthetic generator's part variants per class, when known.
    table: Option<Vec<Vec<usize>>>,
}

impl<'a> Inputs<'a> {
    pub fn new(
        test: &'a TestSet<'a>,
        source: &AnnotationSource,
        acts: &'a Activations,
        noisy: &'a [Vec<PartSet>],
        gradient: &'a OcclusionParts,
        drops: &'a Drops,
        sources: &'a HashMap<usize, SourceRegion>,
    ) -> Self {
        let num_classes = test.model.num_classes();
        Self {
            test,
            acts,
            noisy,
            gradient,
            drops,
            sources,
            below: classes_below(test.model.topology(), &test.leaf_top, num_classes),
            visible: test.anns.iter().map(|a| a.visible_parts()).collect(),
            table: source
                .truth()
                .and_then(|t| variant_table(t, source.part_names(), num_classes)),
        }
    }

    /// The `(inside, outside)` similarity drops of perturbation `p` on prototype `ri`'s
    /// top images.
    pub fn drop_pairs(&self, ri: usize, p: Perturbation) -> Vec<(f64, f64)> {
        self.acts.top[ri]
            .iter()
            .filter_map(|t| self.drops.get(&(ri, p, t.image)).copied())
            .collect()
    }

    /// The test images whose greedy (predicted) path passes through decision row `row`:
    /// the images whose explanation shows this prototype; with `found_only`, only those
    /// whose path answers it "present" (the explanation says it is found there).
    fn images_on_path(&self, row: usize, found_only: bool) -> Vec<usize> {
        (0..self.test.num_images())
            .filter(|&i| {
                self.acts.routed.get(i).is_some_and(|r| {
                    r.steps
                        .iter()
                        .any(|s| s.row == row && (s.present || !found_only))
                })
            })
            .collect()
    }

    /// The test images whose class is in `mask`.
    fn images_of(&self, mask: &[bool]) -> Vec<usize> {
        (0..self.test.num_images())
            .filter(|&i| mask.get(self.test.labels[i]).copied().unwrap_or(false))
            .collect()
    }

    /// The figures of prototype `ri`.
    pub fn metrics(&self, ri: usize) -> Result<PrototypeMetrics> {
        let row = self.test.rows[ri];
        let cfg = self.test.cfg;
        let acts = &self.acts.acts;
        let present = self.below.get(2 * row + 2).cloned().unwrap_or_default();
        let absent = self.below.get(2 * row + 1).cloned().unwrap_or_default();
        let served = self.below[row].clone();
        let path_imgs = self.images_on_path(row, false);
        let present_imgs = self.images_of(&present);
        let served_imgs = self.images_of(&served);
        let gather = |imgs: &[usize]| -> (Vec<PartSet>, Vec<PartSet>) {
            (
                imgs.iter().map(|&i| acts[i][ri].parts).collect(),
                imgs.iter().map(|&i| self.visible[i]).collect(),
            )
        };
        // This prototype's entry of per-image sets (noisy parts, occlusion boxes' parts).
        let pick = |sets: &[Vec<PartSet>], imgs: &[usize]| -> Vec<PartSet> {
            imgs.iter().map(|&i| sets[i][ri]).collect()
        };
        let noisy_of = |imgs: &[usize]| pick(self.noisy, imgs);
        let (a_path, v_path) = gather(&path_imgs);
        let (g_path, g_noisy) = (
            pick(&self.gradient.clean, &path_imgs),
            pick(&self.gradient.noisy, &path_imgs),
        );
        let (a_p, v_p) = gather(&present_imgs);
        let found_imgs = self.images_on_path(row, true);
        let (a_f, v_f) = gather(&found_imgs);
        let (g_found, g_found_noisy) = (
            pick(&self.gradient.clean, &found_imgs),
            pick(&self.gradient.noisy, &found_imgs),
        );
        let (a_s, v_s) = gather(&served_imgs);
        let firing: Vec<PartSet> = (0..self.test.num_images())
            .filter(|&i| acts[i][ri].similarity > PRESENT_THRESHOLD)
            .map(|i| acts[i][ri].parts)
            .collect();
        let top_parts: Vec<PartSet> = self.acts.top[ri]
            .iter()
            .map(|t| acts[t.image][ri].parts)
            .collect();
        let src = self.sources.get(&row).cloned();
        let src_part = src.as_ref().and_then(|s| s.region.label.part());
        let relevance = self.relevance(ri, src_part);
        let smoothgrad = self.smoothgrad_relevance(ri, src_part)?;
        let integrated = self.integrated_gradients_relevance(ri, src_part)?;
        let separating = self
            .table
            .as_ref()
            .map(|t| separating_parts(t, &absent, &present));
        let occlusion_discriminative = match (&src, separating) {
            (Some(s), Some(sep)) => s
                .occlusion_region
                .map(|r| r.label.part().is_some_and(|p| sep.contains(p))),
            _ => None,
        };
        Ok(PrototypeMetrics {
            node: self.test.model.topology().node_id(row),
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
            path_images: path_imgs.len(),
            consistency: consistency(&a_path, &v_path, cfg.consistency_threshold),
            stability: stability(&a_path, &noisy_of(&path_imgs)),
            found_images: found_imgs.len(),
            consistency_found: consistency(&a_f, &v_f, cfg.consistency_threshold),
            occlusion_consistency_found: consistency(&g_found, &v_f, cfg.consistency_threshold),
            stability_found: stability(&a_f, &noisy_of(&found_imgs)),
            occlusion_stability_found: stability(&g_found, &g_found_noisy),
            present_images: present_imgs.len(),
            consistency_present: consistency(&a_p, &v_p, cfg.consistency_threshold),
            stability_present: stability(&a_p, &noisy_of(&present_imgs)),
            consistency_served: consistency(&a_s, &v_s, cfg.consistency_threshold),
            occlusion_consistency: consistency(&g_path, &v_path, cfg.consistency_threshold),
            occlusion_stability: stability(&g_path, &g_noisy),
            occlusion_discriminative,
            firing_images: firing.len(),
            firing_purity: purity(&firing),
            top_k_purity: purity(&top_parts),
            object_energy: mean(relevance.object_energy.into_iter()),
            part_energy: mean(relevance.part_energy.into_iter()),
            pointing_game: mean(relevance.pointing.into_iter()),
            smoothgrad_object_energy: mean(smoothgrad.object_energy.into_iter()),
            smoothgrad_part_energy: mean(smoothgrad.part_energy.into_iter()),
            smoothgrad_pointing_game: mean(smoothgrad.pointing.into_iter()),
            integrated_gradients_object_energy: mean(integrated.object_energy.into_iter()),
            integrated_gradients_part_energy: mean(integrated.part_energy.into_iter()),
            integrated_gradients_pointing_game: mean(integrated.pointing.into_iter()),
            object_area_share: mean(relevance.object_area.into_iter()),
            part_area_share: mean(relevance.part_area.into_iter()),
            separating_parts: separating,
            perturbation: self.perturbation(ri),
        })
    }

    /// Energy and pointing game of prototype `ri`'s upsampled similarity maps on its top
    /// images, against the object and against its source part `src_part`.
    fn relevance(&self, ri: usize, src_part: Option<usize>) -> Relevance {
        let grid = &self.acts.grid;
        let mut r = Relevance::default();
        for t in &self.acts.top[ri] {
            let attribution = attribution_map(&t.map, grid.fh, grid.fw, grid.size, grid.size);
            r.add(
                &attribution,
                &self.test.anns[t.image],
                src_part,
                self.test.cfg,
            );
        }
        r
    }

    /// [`Inputs::relevance`] of the SmoothGrad maps (empty when switched off).
    fn smoothgrad_relevance(&self, ri: usize, src_part: Option<usize>) -> Result<Relevance> {
        let cfg = self.test.cfg;
        if cfg.smoothgrad_samples == 0 {
            return Ok(Relevance::default());
        }
        self.gradient_relevance(ri, src_part, &|image, chw| {
            let settings = SmoothGrad {
                samples: cfg.smoothgrad_samples,
                sigma: cfg.smoothgrad_sigma,
                seed: cfg.seed ^ ((image as u64) << 20) ^ ((ri as u64) << 4) ^ 0x5e0,
            };
            let test = self.test;
            smoothgrad_map(
                test.model,
                chw,
                test.size as usize,
                test.rows[ri],
                &settings,
                test.device,
            )
        })
    }

    /// [`Inputs::relevance`] of the integrated-gradients maps (empty when switched off).
    fn integrated_gradients_relevance(
        &self,
        ri: usize,
        src_part: Option<usize>,
    ) -> Result<Relevance> {
        let cfg = self.test.cfg;
        if cfg.integrated_gradients_steps == 0 {
            return Ok(Relevance::default());
        }
        self.gradient_relevance(ri, src_part, &|_, chw| {
            let test = self.test;
            integrated_gradients_map(
                test.model,
                chw,
                test.size as usize,
                test.rows[ri],
                cfg.integrated_gradients_steps,
                test.device,
            )
        })
    }

    /// [`Inputs::relevance`] of the maps `map_of(image, chw)` of prototype `ri`'s top
    /// images.
    fn gradient_relevance(
        &self,
        ri: usize,
        src_part: Option<usize>,
        map_of: &MapOf<'_>,
    ) -> Result<Relevance> {
        let test = self.test;
        let mut r = Relevance::default();
        for t in &self.acts.top[ri] {
            let chw = test.chw_of(&[test.image(t.image)?]);
            let map = map_of(t.image, &chw)?;
            r.add(&map, &test.anns[t.image], src_part, test.cfg);
        }
        Ok(r)
    }

    /// Prototype `ri`'s drops per analysis perturbation.
    fn perturbation(&self, ri: usize) -> Vec<PerturbationDrop> {
        Perturbation::ANALYSIS
            .into_iter()
            .filter_map(|p| drop_summary(p, &self.drop_pairs(ri, p)))
            .collect()
    }
}

/// An attribution map `(image index, normalised CHW image) → map` of one prototype.
type MapOf<'a> = dyn Fn(usize, &[f32]) -> Result<Vec<f32>> + 'a;

/// Per top image of one prototype: energy shares, pointing-game hits and mask areas.
#[derive(Default)]
struct Relevance {
    object_energy: Vec<f64>,
    part_energy: Vec<f64>,
    pointing: Vec<f64>,
    object_area: Vec<f64>,
    part_area: Vec<f64>,
}

impl Relevance {
    /// Adds the figures of one attribution map on an image annotated by `ann`.
    fn add(
        &mut self,
        attribution: &[f32],
        ann: &Annotation,
        src_part: Option<usize>,
        cfg: &MetricsConfig,
    ) {
        let area =
            |mask: &[bool]| mask.iter().filter(|m| **m).count() as f64 / mask.len().max(1) as f64;
        if let Some(mask) = ann.object_mask() {
            self.object_area.push(area(&mask));
            if let Some(e) = energy_share(attribution, &mask) {
                self.object_energy.push(e);
            }
            if let Some(pg) = pointing_game(attribution, &mask, cfg.pointing_share) {
                self.pointing.push(pg);
            }
        }
        if let Some(mask) = src_part.and_then(|p| ann.part_mask(p)) {
            self.part_area.push(area(&mask));
            if let Some(e) = energy_share(attribution, &mask) {
                self.part_energy.push(e);
            }
        }
    }
}

/// Mean drops of perturbation `p` over `(inside, outside)` pairs; `None` without pairs.
pub(super) fn drop_summary(p: Perturbation, pairs: &[(f64, f64)]) -> Option<PerturbationDrop> {
    if pairs.is_empty() {
        return None;
    }
    let exceeds = pairs.iter().filter(|(a, b)| a > b).count();
    Some(PerturbationDrop {
        perturbation: p,
        mean_drop_inside: mean(pairs.iter().map(|x| x.0)).unwrap_or(0.0),
        mean_drop_outside: mean(pairs.iter().map(|x| x.1)).unwrap_or(0.0),
        inside_exceeds_outside: share(exceeds, pairs.len()),
        images: pairs.len(),
    })
}

fn classes_of(mask: &[bool]) -> Vec<usize> {
    mask.iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(c, _)| c)
        .collect()
}
