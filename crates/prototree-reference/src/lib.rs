//! Imports neural prototype trees trained with the PyTorch reference implementation
//! (github.com/M-Nauta/ProtoTree, Nauta et al., CVPR 2021), without Python.
//!
//! The reference saves each checkpoint as a directory with `model_state.pth` (the
//! `state_dict`), `tree.pkl` (the whole module, `pickle.dump`) and `model.pth` (the whole
//! module, `torch.save`). The state dict has every tensor, and the leaf keys
//! (`_root.l.r._dist_params`) encode the shape of a pruned tree, but the map from
//! branches to prototype rows (`_out_map`, built from a Python set, so different in every
//! run) and the nodes' original numbers exist only in the pickled modules. This crate
//! reads both with [`prototree_torch`] (a pickle reader that never executes anything;
//! tensors rebuilt from PyTorch's zip and pre-1.6 formats), recovers the tree
//! ([`tree`]), recognises the backbone ([`backbone`]) and builds our
//! [`prototree_tree::ProtoTree`] ([`import`]): pruned reference trees become our complete
//! topology with pass-through branches, prototype rows are permuted into our heap order,
//! and the result answers exactly as the reference does (soft, greedy and max-leaf
//! routing; see `docs/compatibility.md`).
//!
//! ```no_run
//! use std::path::Path;
//! use candle_core::Device;
//! use prototree_reference::{load_reference, ImportOptions};
//!
//! let imported = load_reference(
//!     Path::new("runs/cub/checkpoints/pruned_and_projected"),
//!     &ImportOptions { class_names: None, image_size: Some(224), stage: None },
//!     &Device::Cpu,
//! )?;
//! let tree = &imported.saved.model;
//! println!("{} decisions", tree.topology().num_decisions());
//! # Ok::<(), prototree_reference::Error>(())
//! ```
#![warn(missing_docs)]

pub mod backbone;
pub mod error;
pub mod import;
pub mod tree;

pub use backbone::detect_backbone;
pub use error::{Error, Result};
pub use import::{
    convert, import_reference, load_reference, CheckpointFiles, ImportOptions, ImportReport,
    Imported, LeafMode, ReferenceCheckpoint,
};
pub use tree::{ReferenceNode, ReferenceTree};
