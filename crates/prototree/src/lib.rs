//! **prototree**: neural prototype trees (ProtoTree, CVPR 2021) in Rust, on candle.
//!
//! Interpretable image classifiers whose decision is a small tree of "does the image
//! contain a patch like this?" questions. This facade re-exports the member crates and
//! offers the high-level pipeline (train on a data set, the demo) used by the CLI.
//!
//! ```no_run
//! use prototree::prelude::*;
//!
//! let cfg = DemoConfig::new("/tmp/demo".into());
//! let summary = run_demo(&cfg, &mut ())?;
//! println!("soft accuracy {:.3}", summary.accuracy_soft);
//! # Ok::<(), prototree::Error>(())
//! ```
#![warn(missing_docs)]

pub mod attempts;
pub mod demo;
pub mod device;
pub mod ensemble;
pub mod error;
pub mod eval;
pub mod explain;
pub mod explanation_metrics;
pub mod export;
pub mod model_dir;
pub mod node_gallery;
pub mod out_of_memory;
pub mod predict;
pub mod prototype_picture;
pub mod recipe;
pub mod report;
pub mod run_config;
pub mod source;
pub mod train;
pub mod workflow;

pub use prototree_backbone as backbone;
pub use prototree_data as data;
pub use prototree_interpret as interpret;
pub use prototree_learn as learn;
pub use prototree_limits as limits;
pub use prototree_ops as ops;
pub use prototree_reference as reference;
pub use prototree_render as render;
pub use prototree_torch as torch;
pub use prototree_tree as tree;

pub use candle_core;

/// The README's code, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
pub use device::candle_device;
pub use error::{Error, Result};

/// The types most programs need.
pub mod prelude {
    pub use crate::demo::{run_demo, DemoConfig, DemoSummary};
    pub use crate::explain::{explain_images, ExplainedImage};
    pub use crate::export::{export_model_dir, ExportFormat};
    pub use crate::model_dir::ModelDir;
    pub use crate::recipe::Recipe;
    pub use crate::report::{report_model_dir, write_report, ReportContent, ReportOptions};
    pub use crate::run_config::RunConfig;
    pub use crate::train::{train, TrainOutcome};
    pub use crate::{Error, Result};
    pub use prototree_backbone::BackboneKind;
    pub use prototree_learn::{Interrupter, Learner, RunMode};
    pub use prototree_tree::{
        load_model, save_model, EpochStats, EvalReport, Event, Observer, ProtoTree, Routing, Stage,
        TrainConfig, TreeConfig,
    };
}
