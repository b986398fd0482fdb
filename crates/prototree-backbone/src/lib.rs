//! CNN feature extractors for prototype trees, on candle.
//!
//! Every backbone implements [`Backbone`]: `features(x)` returns the map before global
//! pooling, as the ProtoTree reference cuts its backbones. Parameters carry PyTorch
//! state_dict names, so torchvision-style weight files load without renaming.
#![warn(missing_docs)]

pub mod backbone;
pub mod batch_norm;
pub mod bbn;
pub mod build;
pub mod classifier;
pub mod efficientnet_lite;
pub mod error;
pub mod kind;
pub mod resnet;
pub mod small_cnn;
pub mod weights;

pub use backbone::Backbone;
pub use batch_norm::{Activation, BatchNormNhwc};
pub use build::build_backbone;
pub use classifier::{EvalTransform, ImageNetClassifier};
pub use efficientnet_lite::EfficientNetLite;
pub use error::{Error, Result};
pub use kind::BackboneKind;
pub use resnet::{BlockKind, ResNet};
pub use small_cnn::SmallCnn;
pub use weights::{load_pretrained, load_weights, load_weights_from, WeightsReport};
