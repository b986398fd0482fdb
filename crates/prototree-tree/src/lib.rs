//! The soft neural prototype tree (Nauta, van Bree & Seifert, "Neural Prototype Trees for
//! Interpretable Fine-grained Image Recognition", CVPR 2021), on candle.
//!
//! A [`ProtoTree`] is a CNN backbone, a 1×1 add-on layer with a sigmoid, one prototype per
//! branch of a complete binary tree and a class distribution per leaf. A branch routes an
//! image right ("the prototype is present") with probability `exp(−min distance)`; the
//! output is the path-probability-weighted mixture of the leaves. Distances for all
//! prototypes are one matrix product, routing runs level by level, and leaves learn
//! without gradients (the training loop is the `prototree-learn` crate).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use prototree_backbone::BackboneKind;
//! use prototree_tree::{ProtoTree, TreeConfig};
//!
//! let config = TreeConfig { backbone: BackboneKind::SmallCnn, depth: 3, proto_dim: 16, num_classes: 5 }
//!     .check()?;
//! let tree = ProtoTree::new(&config, &Device::Cpu, 42)?;
//! let images = Tensor::zeros((2, 3, 32, 32), candle_core::DType::F32, &Device::Cpu)?;
//! let out = tree.forward(&images, false)?;
//! assert_eq!(out.probabilities.dims(), &[2, 5]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod batch;
pub mod bundle;
pub mod config;
pub mod ensemble;
pub mod error;
pub mod evaluate;
pub mod flip_alignment;
pub mod geometry;
pub mod inference;
pub mod init;
pub mod io;
pub mod leaf_reseed;
pub mod leaf_sharing;
pub mod leaves;
pub mod loss;
pub mod memory;
pub mod model;
pub mod observer;
pub mod predict;
pub mod prototype_init;
pub mod route_keeping;
pub mod route_repair;
pub mod routing;
pub mod stage;
pub mod stats;
pub mod testing;
pub mod topology;
pub mod train_config;

/// Prototype distances (the ops crate's; spec §1.4).
pub use prototree_ops::distance;
pub use prototree_ops::reduction;

pub use batch::{one_hot, Batch, BatchSource};
pub use bundle::{load_model, SavedModel};
pub use config::{TreeConfig, ValidTreeConfig};
pub use ensemble::Ensemble;
pub use error::{ConfigError, Error, Result};
pub use evaluate::evaluate;
pub use inference::{EvalReport, PathStep, Routing};
pub use io::{save_model, ModelMeta, ProjectionRecord};
pub use leaf_reseed::{plan_reseeds, ClassLeafTally, LeafReseed};
pub use leaf_sharing::LeafSharing;
pub use leaves::Leaves;
pub use model::{Latent, ProtoTree, TreeOutput};
pub use observer::{Event, Observer, Stage};
pub use predict::Prediction;
pub use stage::ModelStage;
pub use stats::{BatchStats, EpochStats, WarmupEpoch};
pub use topology::{BranchState, Direction, NodeId, Topology};
pub use train_config::{TrainConfig, ValidTrainConfig};
