//! The one training loop of prototree-rs (ProtoTree, Nauta et al., CVPR 2021, spec §2).
//!
//! A [`Learner`] owns the [`ProtoTree`](prototree_tree::ProtoTree) it trains, one Adam per
//! [`ParamGroup`], the schedule (learning-rate milestones, frozen backbone epochs) and one
//! [`LearnerState`] — epochs done, an interrupted epoch's progress, optimiser moments,
//! history, best score — which is exactly what a [`checkpoint`] saves. Options plug in
//! through [`LearnerBuilder`]: a [`RunDir`] (checkpoints last + best, `metrics.jsonl`),
//! the evaluation cadence, an [`Interrupter`] and the run's fingerprint. Progress goes to
//! a [`prototree_tree::Observer`].
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use prototree_backbone::BackboneKind;
//! use prototree_learn::Learner;
//! use prototree_tree::{Batch, BatchSource, ProtoTree, TrainConfig, TreeConfig};
//!
//! struct Zeros;
//! impl BatchSource for Zeros {
//!     fn num_batches(&self) -> usize { 1 }
//!     fn batches(&mut self, _epoch: usize)
//!         -> Box<dyn Iterator<Item = prototree_tree::Result<Batch>> + '_> {
//!         Box::new(std::iter::once((|| Ok(Batch {
//!             images: Tensor::zeros((2, 3, 32, 32), candle_core::DType::F32, &Device::Cpu)?,
//!             labels: Tensor::new(&[0u32, 1], &Device::Cpu)?,
//!         }))()))
//!     }
//! }
//!
//! let cfg = TreeConfig { backbone: BackboneKind::SmallCnn, depth: 2, proto_dim: 8, num_classes: 2 }
//!     .check()?;
//! let model = ProtoTree::new(&cfg, &Device::Cpu, 0)?;
//! let schedule = TrainConfig { epochs: 2, freeze_epochs: 0, ..TrainConfig::default() };
//! let mut learner = Learner::builder(model, &schedule).build()?;
//! let history = learner.fit(&mut Zeros, None, &mut ())?;
//! assert_eq!((history.len(), learner.state().epochs_done), (2, 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod adam;
pub mod builder;
pub mod checkpoint;
pub mod checkpointer;
pub mod error;
pub mod fingerprint;
pub mod input_noise;
pub mod interrupt;
mod json_lines;
pub mod learner;
pub mod linear_head;
pub mod metrics_log;
pub mod param_group;
pub mod run_dir;
pub mod state;
pub mod warmup;

pub use adam::{Adam, AdamConfig, AdamState};
pub use builder::LearnerBuilder;
pub use checkpoint::{checkpoint_exists, load_checkpoint, save_checkpoint, Checkpoint};
pub use checkpointer::Checkpointer;
pub use error::{Error, Result};
pub use fingerprint::fingerprint_differences;
pub use interrupt::Interrupter;
pub use learner::Learner;
pub use metrics_log::{MetricsLog, METRICS_FILE};
pub use param_group::{GroupMap, ParamGroup};
pub use run_dir::{best_checkpoint_dir, last_checkpoint_dir, RunDir, RunMode, CHECKPOINTS_DIR};
pub use state::{LearnerState, PartialEpoch};
pub use warmup::{read_warmup_log, WarmupEpoch, WARMUP_FILE};
