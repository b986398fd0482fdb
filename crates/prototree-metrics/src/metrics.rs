//! What [`explanation_metrics`](crate::explanation_metrics) returns: the settings, the
//! headline fractions, and the details per prototype, all serialisable.

use prototree_tree::geometry::PixelBox;
use prototree_tree::topology::NodeId;
use prototree_tree::{Observer, Stage};
use serde::{Deserialize, Serialize};

use crate::consistency::{Consistency, PartShare};
use crate::faithfulness::DeletionSummary;
use crate::parts::{PartSet, Region};
use crate::perturb::Perturbation;
use crate::{Error, Result};

/// Settings of the metrics; the defaults are the documented ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// A part is in a region when it covers at least this share of the region's pixels
    /// or at least half of the part is inside (part masks only).
    pub min_part_share: f32,
    /// Take the parts of a region from the keypoints even where the masks carry part
    /// labels: a part is in a region when its keypoint is (Huang et al.'s and PIP-Net's
    /// rule on CUB). The masks still tell object from background. Needs keypoints.
    pub parts_from_keypoints: bool,
    /// Huang et al.'s consistency threshold (0.8).
    pub consistency_threshold: f64,
    /// Standard deviation of the stability noise, in normalised input units (Huang et
    /// al.: 0.2).
    pub noise_sigma: f32,
    /// The stability noise is clipped to ±this (Huang et al.: 0.25).
    pub noise_clip: f32,
    /// Top activating test images per prototype for purity, relevance and perturbation
    /// analysis (PIP-Net: 10).
    pub top_k: usize,
    /// Share of the most relevant pixels in the pointing game ("mask relevance"; CaBRNet's
    /// example uses 10%).
    pub pointing_share: f64,
    /// Seed of all noise.
    pub seed: u64,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Use at most this many test images (spread evenly over the split).
    pub max_images: Option<usize>,
    /// Noisy copies per SmoothGrad map of a prototype's top images (0: no SmoothGrad).
    pub smoothgrad_samples: usize,
    /// SmoothGrad's noise, as a share of the image's value range.
    pub smoothgrad_sigma: f32,
    /// Points on the path from the baseline per integrated-gradients map of a prototype's
    /// top images (0: no integrated gradients).
    pub integrated_gradients_steps: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            min_part_share: 0.05,
            parts_from_keypoints: false,
            consistency_threshold: 0.8,
            noise_sigma: 0.2,
            noise_clip: 0.25,
            top_k: 10,
            pointing_share: 0.1,
            seed: 0,
            batch_size: 64,
            max_images: None,
            smoothgrad_samples: 8,
            smoothgrad_sigma: 0.15,
            integrated_gradients_steps: 16,
        }
    }
}

impl MetricsConfig {
    /// Checks the ranges.
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Invalid(format!("metrics setting: {what}")));
        if !(self.min_part_share > 0.0 && self.min_part_share <= 1.0) {
            return bad("min_part_share must be in (0, 1]");
        }
        if !(self.consistency_threshold > 0.0 && self.consistency_threshold <= 1.0) {
            return bad("consistency_threshold must be in (0, 1]");
        }
        if !(self.noise_sigma >= 0.0 && self.noise_clip >= 0.0) {
            return bad("noise_sigma and noise_clip must be non-negative");
        }
        if self.top_k == 0 || self.batch_size == 0 {
            return bad("top_k and batch_size must be at least 1");
        }
        if !(self.pointing_share > 0.0 && self.pointing_share <= 1.0) {
            return bad("pointing_share must be in (0, 1]");
        }
        if !(self.smoothgrad_sigma.is_finite() && self.smoothgrad_sigma >= 0.0) {
            return bad("smoothgrad_sigma must be finite and non-negative");
        }
        if self.max_images == Some(0) {
            return bad("max_images must be at least 1");
        }
        Ok(())
    }
}

/// The steps of [`explanation_metrics`](crate::explanation_metrics), for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Decoding test images and their annotations (unit: image).
    LoadImages,
    /// Similarity maps of every prototype on every test image (unit: batch).
    Activations,
    /// The same with input noise, for stability (unit: batch).
    Noise,
    /// Occlusion boxes of every prototype on the plain and the noisy images (unit: batch).
    OcclusionBoxes,
    /// Deleting the matched patch of each "present" decision (unit: batch).
    Deletion,
    /// Perturbing each prototype's matched region vs the rest (unit: batch).
    Perturbation,
}

impl Phase {
    /// A short human-readable name.
    pub fn label(self) -> &'static str {
        match self {
            Phase::LoadImages => "loading images and annotations",
            Phase::Activations => "prototype activations",
            Phase::Noise => "activations under noise",
            Phase::OcclusionBoxes => "occlusion boxes",
            Phase::Deletion => "deleting matched patches",
            Phase::Perturbation => "perturbation analysis",
        }
    }

    /// The stage a phase is reported as: loading as [`Stage::LoadImages`], every pass
    /// over the images as [`Stage::Evaluate`].
    pub fn stage(self) -> Stage {
        match self {
            Phase::LoadImages => Stage::LoadImages,
            _ => Stage::Evaluate,
        }
    }

    /// Reports the start of this phase: a message naming it, then its stage with `total`
    /// steps.
    pub(crate) fn started(self, obs: &mut dyn Observer, total: usize) {
        obs.message(&format!("explanation metrics: {}", self.label()));
        obs.stage_started(self.stage(), total);
    }

    /// Reports the end of this phase.
    pub(crate) fn finished(self, obs: &mut dyn Observer) {
        obs.stage_finished(self.stage());
    }
}

/// Where a projected prototype comes from and what its patch shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRegion {
    /// The source (training) image.
    pub image_path: String,
    /// The patch's box in the image as the model saw it, `[x0, y0, x1, y1)`.
    pub image_box: PixelBox,
    /// What the patch shows.
    pub region: Region,
    /// The name of the part it sits on, if any.
    pub part_name: Option<String>,
    /// The occlusion box of the prototype on its source image: the window of the patch
    /// box's size whose occlusion lowers the similarity the most ([`crate::occlusion_box`]).
    #[serde(default)]
    pub occlusion_box: Option<PixelBox>,
    /// What the occlusion box shows.
    #[serde(default)]
    pub occlusion_region: Option<Region>,
    /// How much the prototype's similarity to its source image drops when the patch box
    /// is filled with the image's mean colour.
    #[serde(default)]
    pub patch_box_drop: Option<f64>,
    /// The same drop for the occlusion box.
    #[serde(default)]
    pub occlusion_box_drop: Option<f64>,
}

/// Mean similarity drops of one perturbation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PerturbationDrop {
    /// The perturbation.
    pub perturbation: Perturbation,
    /// Mean drop when the matched region is perturbed.
    pub mean_drop_inside: f64,
    /// Mean drop when everything but the matched region is perturbed.
    pub mean_drop_outside: f64,
    /// Share of images where the inside drop exceeds the outside drop.
    pub inside_exceeds_outside: f64,
    /// Number of images.
    pub images: usize,
}

/// The metrics of one prototype (decision node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrototypeMetrics {
    /// The decision node (reference numbering).
    pub node: NodeId,
    /// Prototype row (heap index).
    pub row: usize,
    /// The projected prototype's source patch, when projected and annotated.
    pub source: Option<SourceRegion>,
    /// Classes served by the "present" subtree.
    pub present_classes: Vec<usize>,
    /// Classes served by the whole node (both subtrees).
    pub served_classes: Vec<usize>,
    /// Test images whose predicted (greedy) path passes through the node: the images
    /// whose explanation shows this prototype (consistency, stability).
    #[serde(default)]
    pub path_images: usize,
    /// Consistency (Huang et al.) over the images on whose predicted path it lies.
    pub consistency: Option<Consistency>,
    /// Stability (Huang et al.) over the images on whose predicted path it lies.
    pub stability: Option<f64>,
    /// Test images whose predicted path answers the node "present" (the prototype is
    /// found): the path images where the explanation shows the prototype as a match.
    #[serde(default)]
    pub found_images: usize,
    /// Consistency over the found images.
    #[serde(default)]
    pub consistency_found: Option<Consistency>,
    /// [`PrototypeMetrics::consistency_found`] with occlusion boxes as regions.
    #[serde(default)]
    pub occlusion_consistency_found: Option<Consistency>,
    /// Stability over the found images.
    #[serde(default)]
    pub stability_found: Option<f64>,
    /// [`PrototypeMetrics::stability_found`] with occlusion boxes as regions.
    #[serde(default)]
    pub occlusion_stability_found: Option<f64>,
    /// Test images of the present classes.
    pub present_images: usize,
    /// Consistency over the present classes' test images.
    #[serde(default)]
    pub consistency_present: Option<Consistency>,
    /// Stability over the present classes' test images.
    #[serde(default)]
    pub stability_present: Option<f64>,
    /// Consistency over all served classes' test images.
    pub consistency_served: Option<Consistency>,
    /// [`PrototypeMetrics::consistency`] with occlusion boxes as regions
    /// ([`crate::occlusion_box`]).
    #[serde(default)]
    pub occlusion_consistency: Option<Consistency>,
    /// [`PrototypeMetrics::stability`] with occlusion boxes as regions.
    #[serde(default)]
    pub occlusion_stability: Option<f64>,
    /// [`PrototypeMetrics::discriminative`] with the source's occlusion box.
    #[serde(default)]
    pub occlusion_discriminative: Option<bool>,
    /// Test images where the prototype fires (similarity > 0.5).
    pub firing_images: usize,
    /// Part purity over the firing images.
    pub firing_purity: Option<PartShare>,
    /// PIP-Net purity over the top-k activating test images.
    pub top_k_purity: Option<PartShare>,
    /// Mean share of the attribution energy inside the object mask (top-k images).
    pub object_energy: Option<f64>,
    /// Mean share of the attribution energy inside the mask of the source part.
    pub part_energy: Option<f64>,
    /// Mean share of the image the object covers (top-k images): the energy and pointing
    /// game of an uninformative (uniform) map.
    pub object_area_share: Option<f64>,
    /// Mean share of the image the source part covers (top-k images): the part energy of
    /// a uniform map.
    pub part_area_share: Option<f64>,
    /// Mean pointing game inside the object mask (top-k images).
    pub pointing_game: Option<f64>,
    /// [`PrototypeMetrics::object_energy`] of the SmoothGrad maps.
    #[serde(default)]
    pub smoothgrad_object_energy: Option<f64>,
    /// [`PrototypeMetrics::part_energy`] of the SmoothGrad maps.
    #[serde(default)]
    pub smoothgrad_part_energy: Option<f64>,
    /// [`PrototypeMetrics::pointing_game`] of the SmoothGrad maps.
    #[serde(default)]
    pub smoothgrad_pointing_game: Option<f64>,
    /// [`PrototypeMetrics::object_energy`] of the integrated-gradients maps.
    #[serde(default)]
    pub integrated_gradients_object_energy: Option<f64>,
    /// [`PrototypeMetrics::part_energy`] of the integrated-gradients maps.
    #[serde(default)]
    pub integrated_gradients_part_energy: Option<f64>,
    /// [`PrototypeMetrics::pointing_game`] of the integrated-gradients maps.
    #[serde(default)]
    pub integrated_gradients_pointing_game: Option<f64>,
    /// Parts separating the node's subtrees (with a variant table).
    pub separating_parts: Option<PartSet>,
    /// Whether the prototype sits on a separating part.
    pub discriminative: Option<bool>,
    /// Perturbation analysis on the top-k images.
    pub perturbation: Vec<PerturbationDrop>,
}

/// Every explanation metric of a model. Fields named `explanation_*` are fractions in
/// [0, 1]; a fraction over an empty set is 0 and its `num_*` count says so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplanationMetrics {
    /// Share of located prototypes whose source patch sits on an annotated part.
    pub explanation_on_part: f64,
    /// Share of located prototypes whose source patch sits on the object (part or not).
    pub explanation_on_object: f64,
    /// Share of prototypes consistent (Huang et al.) on the test images on whose
    /// predicted path they lie.
    pub explanation_consistency: f64,
    /// Mean stability under input noise (Huang et al.) on the same images.
    pub explanation_stability: f64,
    /// Share of prototypes consistent on the images of the classes below their present
    /// branch (where the prototype is meant to be found).
    #[serde(default)]
    pub explanation_consistency_present: f64,
    /// Mean stability on the images of the classes below the present branch.
    #[serde(default)]
    pub explanation_stability_present: f64,
    /// Share of prototypes consistent on all served classes' images.
    pub explanation_consistency_served: f64,
    /// Share of prototypes consistent on the test images whose predicted path answers
    /// them "present": the images whose explanation says the prototype is found there.
    #[serde(default)]
    pub explanation_consistency_found: f64,
    /// Mean stability on the same images.
    #[serde(default)]
    pub explanation_stability_found: f64,
    /// [`ExplanationMetrics::explanation_consistency_found`] with occlusion boxes.
    #[serde(default)]
    pub explanation_occlusion_consistency_found: f64,
    /// [`ExplanationMetrics::explanation_stability_found`] with occlusion boxes.
    #[serde(default)]
    pub explanation_occlusion_stability_found: f64,
    /// Mean drop of a prototype's similarity to its source image when the source's patch
    /// box is filled with the image's mean colour (how much of the match the box holds).
    #[serde(default)]
    pub source_patch_box_drop: f64,
    /// The same for the source's occlusion box.
    #[serde(default)]
    pub source_occlusion_box_drop: f64,
    /// [`ExplanationMetrics::explanation_on_part`] with the source's occlusion box as the
    /// region ([`crate::occlusion_box`]).
    #[serde(default)]
    pub explanation_occlusion_on_part: f64,
    /// [`ExplanationMetrics::explanation_consistency`] with occlusion boxes.
    #[serde(default)]
    pub explanation_occlusion_consistency: f64,
    /// [`ExplanationMetrics::explanation_stability`] with occlusion boxes.
    #[serde(default)]
    pub explanation_occlusion_stability: f64,
    /// [`ExplanationMetrics::explanation_discriminative_share`] with the source's
    /// occlusion box.
    #[serde(default)]
    pub explanation_occlusion_discriminative_share: f64,
    /// Share of located decision nodes whose prototype sits on a part separating the
    /// classes of the two subtrees (needs `synth.json`).
    pub explanation_discriminative_share: f64,
    /// Mean part purity over the images where each prototype fires.
    pub explanation_firing_purity: f64,
    /// Mean PIP-Net purity (top-k activating test images).
    pub explanation_top_k_purity: f64,
    /// Mean share of attribution energy inside the object mask (CaBRNet relevance).
    pub explanation_object_energy: f64,
    /// Mean share of attribution energy inside the source part's mask.
    pub explanation_part_energy: f64,
    /// Mean object area share of the images behind `explanation_object_energy` (the
    /// value a uniform map would get; not a quality score).
    pub object_area_share: f64,
    /// Mean part area share of the images behind `explanation_part_energy` (the value a
    /// uniform map would get).
    pub part_area_share: f64,
    /// Mean pointing game inside the object mask.
    pub explanation_pointing_game: f64,
    /// [`ExplanationMetrics::explanation_object_energy`] of the SmoothGrad maps (0 when
    /// not measured).
    #[serde(default)]
    pub explanation_smoothgrad_object_energy: f64,
    /// [`ExplanationMetrics::explanation_part_energy`] of the SmoothGrad maps.
    #[serde(default)]
    pub explanation_smoothgrad_part_energy: f64,
    /// [`ExplanationMetrics::explanation_pointing_game`] of the SmoothGrad maps.
    #[serde(default)]
    pub explanation_smoothgrad_pointing_game: f64,
    /// [`ExplanationMetrics::explanation_object_energy`] of the integrated-gradients maps
    /// (0 when not measured).
    #[serde(default)]
    pub explanation_integrated_gradients_object_energy: f64,
    /// [`ExplanationMetrics::explanation_part_energy`] of the integrated-gradients maps.
    #[serde(default)]
    pub explanation_integrated_gradients_part_energy: f64,
    /// [`ExplanationMetrics::explanation_pointing_game`] of the integrated-gradients maps.
    #[serde(default)]
    pub explanation_integrated_gradients_pointing_game: f64,
    /// Share of (prototype, image, perturbation) where perturbing the matched region
    /// lowers the similarity more than perturbing the rest of the image.
    pub explanation_perturbation_locality: f64,
    /// Share of deletions of a "present" decision's matched patch that change the greedy
    /// prediction.
    pub explanation_deletion_prediction_change: f64,
    /// Share of those deletions that flip the decision itself (similarity ≤ 0.5).
    pub explanation_deletion_decision_flip: f64,
    /// Greedy vs soft agreement on the test images.
    pub explanation_greedy_fidelity: f64,
    /// Greedy accuracy on the test images.
    pub accuracy_greedy: f64,
    /// Deletion details.
    pub deletion: DeletionSummary,
    /// Perturbation analysis per perturbation, over all prototypes.
    pub perturbation: Vec<PerturbationDrop>,
    /// Mean number of decisions on a greedy path.
    pub mean_path_length: f64,
    /// Mean distinct prototypes on the greedy paths of the test images, per predicted class.
    pub distinct_prototypes_per_class: f64,
    /// Mean distinct prototypes on the tree's paths to each class's leaves.
    pub prototypes_per_class_in_tree: f64,
    /// Test images used.
    pub num_test_images: usize,
    /// Decision nodes (prototypes in use).
    pub num_prototypes: usize,
    /// Prototypes located on their source image (projected, annotated).
    pub num_located: usize,
    /// Decision nodes evaluated for the discriminative share.
    pub num_discriminative_evaluated: usize,
    /// Where parts come from: `mask` or `keypoints`.
    pub part_source: String,
    /// Part names, index = part index.
    pub part_names: Vec<String>,
    /// The settings.
    pub config: MetricsConfig,
    /// Per-prototype details, in heap order.
    pub prototypes: Vec<PrototypeMetrics>,
}

impl ExplanationMetrics {
    /// The fractions, by name (all in [0, 1]).
    pub fn headline(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("explanation_on_part", self.explanation_on_part),
            ("explanation_on_object", self.explanation_on_object),
            ("explanation_consistency", self.explanation_consistency),
            ("explanation_stability", self.explanation_stability),
            (
                "explanation_consistency_present",
                self.explanation_consistency_present,
            ),
            (
                "explanation_stability_present",
                self.explanation_stability_present,
            ),
            (
                "explanation_consistency_served",
                self.explanation_consistency_served,
            ),
            (
                "explanation_consistency_found",
                self.explanation_consistency_found,
            ),
            (
                "explanation_stability_found",
                self.explanation_stability_found,
            ),
            (
                "explanation_occlusion_consistency_found",
                self.explanation_occlusion_consistency_found,
            ),
            (
                "explanation_occlusion_stability_found",
                self.explanation_occlusion_stability_found,
            ),
            (
                "explanation_occlusion_on_part",
                self.explanation_occlusion_on_part,
            ),
            (
                "explanation_occlusion_consistency",
                self.explanation_occlusion_consistency,
            ),
            (
                "explanation_occlusion_stability",
                self.explanation_occlusion_stability,
            ),
            (
                "explanation_occlusion_discriminative_share",
                self.explanation_occlusion_discriminative_share,
            ),
            (
                "explanation_discriminative_share",
                self.explanation_discriminative_share,
            ),
            ("explanation_firing_purity", self.explanation_firing_purity),
            ("explanation_top_k_purity", self.explanation_top_k_purity),
            ("explanation_object_energy", self.explanation_object_energy),
            ("explanation_part_energy", self.explanation_part_energy),
            ("explanation_pointing_game", self.explanation_pointing_game),
            (
                "explanation_smoothgrad_object_energy",
                self.explanation_smoothgrad_object_energy,
            ),
            (
                "explanation_smoothgrad_pointing_game",
                self.explanation_smoothgrad_pointing_game,
            ),
            (
                "explanation_integrated_gradients_object_energy",
                self.explanation_integrated_gradients_object_energy,
            ),
            (
                "explanation_integrated_gradients_pointing_game",
                self.explanation_integrated_gradients_pointing_game,
            ),
            (
                "explanation_perturbation_locality",
                self.explanation_perturbation_locality,
            ),
            (
                "explanation_deletion_prediction_change",
                self.explanation_deletion_prediction_change,
            ),
            (
                "explanation_deletion_decision_flip",
                self.explanation_deletion_decision_flip,
            ),
            (
                "explanation_greedy_fidelity",
                self.explanation_greedy_fidelity,
            ),
        ]
    }

    /// The report rows of faithfulness and path statistics (perturbation locality,
    /// deletion, fidelity, path lengths, prototypes per class).
    fn faithfulness_rows(&self) -> Vec<(String, String)> {
        let pct = |v: f64| format!("{:.1}%", 100.0 * v);
        vec![
            (
                "perturbing the matched region hurts more than the rest".to_string(),
                pct(self.explanation_perturbation_locality),
            ),
            (
                "deleting a present decision's patch changes the prediction".to_string(),
                format!(
                    "{} of {} (decision flips {}, mean similarity drop {:.3})",
                    pct(self.explanation_deletion_prediction_change),
                    self.deletion.deletions,
                    pct(self.explanation_deletion_decision_flip),
                    self.deletion.mean_similarity_drop
                ),
            ),
            (
                "greedy fidelity / greedy accuracy".to_string(),
                format!(
                    "{} / {}",
                    pct(self.explanation_greedy_fidelity),
                    pct(self.accuracy_greedy)
                ),
            ),
            (
                "mean path length".to_string(),
                format!("{:.2}", self.mean_path_length),
            ),
            (
                "distinct prototypes per class (test paths / tree)".to_string(),
                format!(
                    "{:.2} / {:.2}",
                    self.distinct_prototypes_per_class, self.prototypes_per_class_in_tree
                ),
            ),
        ]
    }

    /// Rows for a report table: readable labels and formatted values.
    pub fn report_rows(&self) -> Vec<(String, String)> {
        let pct = |v: f64| format!("{:.1}%", 100.0 * v);
        let k = self.config.top_k;
        let mut rows = vec![
            (
                "prototypes on an annotated part (source patch)".to_string(),
                format!(
                    "{} of {} located",
                    pct(self.explanation_on_part),
                    self.num_located
                ),
            ),
            (
                "prototypes on the object (source patch)".to_string(),
                pct(self.explanation_on_object),
            ),
            (
                format!(
                    "consistency (Huang et al., ≥ {:.0}% on one part, images whose path shows it)",
                    100.0 * self.config.consistency_threshold
                ),
                pct(self.explanation_consistency),
            ),
            (
                "consistency / stability over the images whose path finds it (answers present)"
                    .to_string(),
                format!(
                    "{} / {}",
                    pct(self.explanation_consistency_found),
                    pct(self.explanation_stability_found)
                ),
            ),
            (
                "consistency over the present branch's classes".to_string(),
                pct(self.explanation_consistency_present),
            ),
            (
                "consistency over all served classes".to_string(),
                pct(self.explanation_consistency_served),
            ),
            (
                format!(
                    "stability (noise σ = {} normalised, images whose path shows it)",
                    self.config.noise_sigma
                ),
                pct(self.explanation_stability),
            ),
            (
                "stability over the present branch's classes".to_string(),
                pct(self.explanation_stability_present),
            ),
            (
                "decision nodes on a part separating their subtrees".to_string(),
                if self.num_discriminative_evaluated > 0 {
                    format!(
                        "{} of {}",
                        pct(self.explanation_discriminative_share),
                        self.num_discriminative_evaluated
                    )
                } else {
                    "no variant table".to_string()
                },
            ),
            (
                "with occlusion boxes: on a part / consistency / stability / separating"
                    .to_string(),
                format!(
                    "{} / {} / {} / {}",
                    pct(self.explanation_occlusion_on_part),
                    pct(self.explanation_occlusion_consistency),
                    pct(self.explanation_occlusion_stability),
                    pct(self.explanation_occlusion_discriminative_share)
                ),
            ),
            (
                "with occlusion boxes, images whose path finds it: consistency / stability"
                    .to_string(),
                format!(
                    "{} / {}",
                    pct(self.explanation_occlusion_consistency_found),
                    pct(self.explanation_occlusion_stability_found)
                ),
            ),
            (
                "similarity drop when the source's patch box / occlusion box is filled".to_string(),
                format!(
                    "{:.3} / {:.3}",
                    self.source_patch_box_drop, self.source_occlusion_box_drop
                ),
            ),
            (
                "part purity where prototypes fire (similarity > 0.5)".to_string(),
                pct(self.explanation_firing_purity),
            ),
            (
                format!("part purity of the top-{k} activations (PIP-Net)"),
                pct(self.explanation_top_k_purity),
            ),
            (
                "similarity energy inside the object (CaBRNet)".to_string(),
                format!(
                    "{} (object area {})",
                    pct(self.explanation_object_energy),
                    pct(self.object_area_share)
                ),
            ),
            (
                "similarity energy inside the prototype's part".to_string(),
                format!(
                    "{} (part area {})",
                    pct(self.explanation_part_energy),
                    pct(self.part_area_share)
                ),
            ),
            (
                format!(
                    "pointing game (top {:.0}% pixels on the object)",
                    100.0 * self.config.pointing_share
                ),
                pct(self.explanation_pointing_game),
            ),
        ];
        if self.config.smoothgrad_samples > 0 {
            rows.push((
                "SmoothGrad energy on the object / the part".to_string(),
                format!(
                    "{} / {}",
                    pct(self.explanation_smoothgrad_object_energy),
                    pct(self.explanation_smoothgrad_part_energy)
                ),
            ));
            rows.push((
                "SmoothGrad pointing game (object)".to_string(),
                pct(self.explanation_smoothgrad_pointing_game),
            ));
        }
        if self.config.integrated_gradients_steps > 0 {
            rows.push((
                "integrated gradients energy on the object / the part".to_string(),
                format!(
                    "{} / {}",
                    pct(self.explanation_integrated_gradients_object_energy),
                    pct(self.explanation_integrated_gradients_part_energy)
                ),
            ));
            rows.push((
                "integrated gradients pointing game (object)".to_string(),
                pct(self.explanation_integrated_gradients_pointing_game),
            ));
        }
        rows.extend(self.faithfulness_rows());
        for p in &self.perturbation {
            rows.push((
                format!(
                    "similarity drop under {} (region / rest)",
                    p.perturbation.name()
                ),
                format!("{:.3} / {:.3}", p.mean_drop_inside, p.mean_drop_outside),
            ));
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(MetricsConfig::default().check().is_ok());
        for bad in [
            MetricsConfig {
                min_part_share: 0.0,
                ..Default::default()
            },
            MetricsConfig {
                top_k: 0,
                ..Default::default()
            },
            MetricsConfig {
                pointing_share: 1.5,
                ..Default::default()
            },
            MetricsConfig {
                max_images: Some(0),
                ..Default::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync>() {}
        check::<ExplanationMetrics>();
        check::<MetricsConfig>();
    }
}
