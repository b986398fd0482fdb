//! Explanation quality of prototype trees: do prototypes sit on object parts, do they
//! activate on the same part across images and under noise, and do the decisions depend
//! on the patches the explanation shows?
//!
//! Metrics and their sources (definitions in `docs/explanations.md`):
//! - part localization of projected prototypes and part purity where they fire;
//! - consistency and stability (Huang et al., ICCV 2023, "Evaluation and improvement of
//!   interpretability for self-explainable part-prototype networks");
//! - purity of the top-10 activations (PIP-Net, Nauta et al., CVPR 2023);
//! - relevance: similarity energy inside the object / part mask and the pointing game
//!   (CaBRNet, Xu-Darme et al. 2024, after Xu-Darme et al. 2023), and local perturbation
//!   analysis of the matched region vs the rest (CaBRNet, after Nauta et al. 2020);
//! - decision faithfulness: deleting the matched patch of a "present" decision, greedy
//!   fidelity, explanation size;
//! - on the synthetic birds, whether each decision looks at a part that separates the
//!   classes of its subtrees (from the generator's class ↔ part-variant table).
//!
//! The building blocks are pure functions on small inputs ([`localization`], [`consistency`],
//! [`relevance`], [`discriminative`], [`faithfulness`], [`Annotation::region`]);
//! [`explanation_metrics`] runs them all for a saved model on a data set.
#![warn(missing_docs)]

pub mod annotation;
pub mod consistency;
pub mod dataset;
pub mod discriminative;
pub mod driver;
pub mod error;
pub mod faithfulness;
pub mod input_gradients;
pub mod integrated_gradients;
pub mod localization;
pub mod metrics;
pub mod occlusion_box;
pub mod parts;
pub mod patch_sensitivity;
pub mod perturb;
pub mod relevance;
pub mod smoothgrad;

pub use annotation::{Annotation, Keypoint};
pub use consistency::{Consistency, PartShare};
pub use dataset::AnnotationSource;
pub use driver::{explanation_metrics, explanation_metrics_with};
pub use error::{Error, Result};
pub use faithfulness::{Deletion, DeletionSummary};
pub use metrics::{
    ExplanationMetrics, MetricsConfig, PerturbationDrop, Phase, PrototypeMetrics, SourceRegion,
};
pub use parts::{PartSet, Region, RegionLabel};
pub use perturb::{Area, FloatImage, Perturbation};
