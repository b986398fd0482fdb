//! Data sets for prototype trees: the CUB-200-2011 layout (real CUB and the synthetic
//! birds), ImageFolder trees, the synthetic part-based bird generator, the reference's
//! transforms and augmentation, the data protocols (the reference's CUB crops), and
//! in-memory batching.
//!
//! This crate does not depend on candle: batches are plain `f32` buffers.
#![warn(missing_docs)]

pub mod augment;
mod color;
pub mod cub;
pub mod dataset;
pub mod error;
pub mod image_folder;
pub mod loader;
mod prefetch;
pub mod protocol;
pub mod synth;
pub mod transform;

pub use augment::Augmentation;
pub use cub::{BBox, CubDataset, PartLocation, Sample, Split};
pub use dataset::{Dataset, Layout};
pub use error::{Error, Result};
pub use image_folder::ImageFolder;
pub use loader::{load_rgb, Epoch, ImageBatch, Loader, LoaderConfig, SkippedImage};
pub use prefetch::Prefetched;
pub use protocol::{image_ref, load_image_ref, parse_image_ref, CropRect, Protocol, Role, View};
pub use synth::{generate, SynthConfig, SynthSummary, DEFAULT_MAX_ROTATION};
pub use transform::Normalization;
