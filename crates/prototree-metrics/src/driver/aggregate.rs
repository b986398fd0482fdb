//! The headline figures over the tree, from the per-prototype figures and the routing of
//! the plain test images.

use crate::dataset::AnnotationSource;
use crate::discriminative::discriminative_share;
use crate::faithfulness::{
    distinct_prototypes_per_class, prototypes_per_class_in_tree, DeletionSummary,
};
use crate::localization::localization_shares;
use crate::metrics::{ExplanationMetrics, PerturbationDrop, PrototypeMetrics};
use crate::parts::{PartSet, Region};
use crate::perturb::Perturbation;

use super::prototype::{drop_summary, Inputs};
use super::{mean, share};

/// Gathers the [`ExplanationMetrics`].
pub(super) fn aggregate(
    inputs: &Inputs,
    source: &AnnotationSource,
    deletion: DeletionSummary,
    prototypes: Vec<PrototypeMetrics>,
) -> ExplanationMetrics {
    let test = inputs.test;
    let routed = &inputs.acts.routed;
    let located: Vec<Region> = prototypes
        .iter()
        .filter_map(|p| p.source.as_ref().map(|s| s.region))
        .collect();
    let shares = localization_shares(&located);
    let located_by_occlusion: Vec<Region> = prototypes
        .iter()
        .filter_map(|p| p.source.as_ref().and_then(|s| s.occlusion_region))
        .collect();
    let occlusion_shares = localization_shares(&located_by_occlusion);
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
    let disc_by_occlusion: Vec<(Option<usize>, PartSet)> = prototypes
        .iter()
        .filter_map(|p| {
            let region = p.source.as_ref()?.occlusion_region?;
            Some((region.label.part(), p.separating_parts?))
        })
        .collect();
    let fidelity = routed
        .iter()
        .filter(|r| r.greedy_class == r.soft_class)
        .count();
    let correct = routed
        .iter()
        .zip(&test.labels)
        .filter(|(r, y)| r.greedy_class == **y)
        .count();
    let paths: Vec<(usize, Vec<usize>)> = routed
        .iter()
        .map(|r| (r.greedy_class, r.steps.iter().map(|s| s.row).collect()))
        .collect();
    let (perturbation, locality) = perturbation_over_tree(inputs);
    ExplanationMetrics {
        explanation_on_part: shares.on_part,
        explanation_on_object: shares.on_object,
        explanation_consistency: frac(&|p| p.consistency.map(|c| c.consistent)),
        explanation_stability: avg(&|p| p.stability),
        explanation_occlusion_on_part: occlusion_shares.on_part,
        explanation_occlusion_consistency: frac(&|p| p.occlusion_consistency.map(|c| c.consistent)),
        explanation_occlusion_stability: avg(&|p| p.occlusion_stability),
        explanation_occlusion_discriminative_share: discriminative_share(&disc_by_occlusion),
        explanation_consistency_present: frac(&|p| p.consistency_present.map(|c| c.consistent)),
        explanation_stability_present: avg(&|p| p.stability_present),
        explanation_consistency_served: frac(&|p| p.consistency_served.map(|c| c.consistent)),
        explanation_consistency_found: frac(&|p| p.consistency_found.map(|c| c.consistent)),
        explanation_stability_found: avg(&|p| p.stability_found),
        explanation_occlusion_consistency_found: frac(&|p| {
            p.occlusion_consistency_found.map(|c| c.consistent)
        }),
        explanation_occlusion_stability_found: avg(&|p| p.occlusion_stability_found),
        source_patch_box_drop: avg(&|p| p.source.as_ref().and_then(|s| s.patch_box_drop)),
        source_occlusion_box_drop: avg(&|p| p.source.as_ref().and_then(|s| s.occlusion_box_drop)),
        explanation_discriminative_share: discriminative_share(&disc),
        explanation_firing_purity: avg(&|p| p.firing_purity.map(|s| s.share)),
        explanation_top_k_purity: avg(&|p| p.top_k_purity.map(|s| s.share)),
        explanation_object_energy: avg(&|p| p.object_energy),
        explanation_part_energy: avg(&|p| p.part_energy),
        object_area_share: avg(&|p| p.object_area_share),
        part_area_share: avg(&|p| p.part_area_share),
        explanation_pointing_game: avg(&|p| p.pointing_game),
        explanation_smoothgrad_object_energy: avg(&|p| p.smoothgrad_object_energy),
        explanation_smoothgrad_part_energy: avg(&|p| p.smoothgrad_part_energy),
        explanation_smoothgrad_pointing_game: avg(&|p| p.smoothgrad_pointing_game),
        explanation_integrated_gradients_object_energy: avg(&|p| {
            p.integrated_gradients_object_energy
        }),
        explanation_integrated_gradients_part_energy: avg(&|p| p.integrated_gradients_part_energy),
        explanation_integrated_gradients_pointing_game: avg(&|p| {
            p.integrated_gradients_pointing_game
        }),
        explanation_perturbation_locality: locality,
        explanation_deletion_prediction_change: deletion.prediction_change_rate,
        explanation_deletion_decision_flip: deletion.decision_flip_rate,
        explanation_greedy_fidelity: share(fidelity, routed.len()),
        accuracy_greedy: share(correct, routed.len()),
        deletion,
        perturbation,
        mean_path_length: mean(routed.iter().map(|r| r.steps.len() as f64)).unwrap_or(0.0),
        distinct_prototypes_per_class: distinct_prototypes_per_class(&paths),
        prototypes_per_class_in_tree: prototypes_per_class_in_tree(
            test.model.topology(),
            &test.leaf_top,
        ),
        num_test_images: test.num_images(),
        num_prototypes: test.rows.len(),
        num_located: shares.located,
        num_discriminative_evaluated: disc.len(),
        part_source: if source.parts_from_keypoints() {
            "keypoints".into()
        } else {
            "mask".into()
        },
        part_names: source.part_names().to_vec(),
        config: test.cfg.clone(),
        prototypes,
    }
}

/// Per analysis perturbation, the drops over all prototypes' top images (sorted by
/// name), and the share of pairs whose drop inside the patch exceeds the one outside.
fn perturbation_over_tree(inputs: &Inputs) -> (Vec<PerturbationDrop>, f64) {
    let (mut exceeds, mut total) = (0usize, 0usize);
    let mut summaries = Vec::new();
    for p in Perturbation::ANALYSIS {
        let pairs: Vec<(f64, f64)> = (0..inputs.test.rows.len())
            .flat_map(|ri| inputs.drop_pairs(ri, p))
            .collect();
        exceeds += pairs.iter().filter(|(a, b)| a > b).count();
        total += pairs.len();
        summaries.extend(drop_summary(p, &pairs));
    }
    summaries.sort_by_key(|p| p.perturbation.name());
    (summaries, share(exceeds, total))
}
