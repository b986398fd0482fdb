//! Drawing prototype trees and their explanations: Graphviz DOT ([`DotExport`]), a
//! self-contained SVG with the prototype patches embedded ([`SvgExport`]), the HTML report
//! ([`Report`]) and explanation pages ([`ExplanationPage`]), patch pictures and similarity
//! heatmaps, and PNG training curves. Every export is a borrowed `Display` wrapper;
//! writing files is the caller's.
#![warn(missing_docs)]

pub mod dot;
pub mod explanation_images;
pub mod explanation_page;
mod gallery;
pub mod plot;
pub mod report;
pub mod svg;
mod training_section;
pub mod visualize;

pub use dot::DotExport;
pub use explanation_images::{explanation_images, prototype_images, StepImages};
pub use explanation_page::ExplanationPage;
pub use report::{AccuracyRow, ExplanationLink, GalleryEntry, GalleryPatch, Report};
pub use svg::SvgExport;
