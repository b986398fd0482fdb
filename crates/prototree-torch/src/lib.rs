//! Reading PyTorch files without Python: safetensors, `torch.save` zip archives (PyTorch
//! ≥ 1.6), the pre-1.6 `torch.save` stream and plain pickles.
//!
//! - [`read_state_dict`] is the one entry point for weights: it tells the formats apart by
//!   their first bytes (never by the file's extension) and returns every tensor by name.
//! - [`pickle`] is a reader of Python's pickle format that **never executes code**: the
//!   stack machine is run over the bytes, but a named callable only ever becomes a
//!   symbolic value ([`pickle::Value::Global`]) and a call a recorded
//!   [`pickle::Instance`]; nothing is imported, resolved or called. A handful of pure data
//!   constructors (`set`, `OrderedDict`, `bytearray`, …) are interpreted as data.
//! - [`torch_file`] rebuilds tensors from the storages of a parsed file
//!   ([`TorchFile`]), and lists the tensors of a state dict or of a pickled `nn.Module`.
//!
//! Damaged or hostile files give an [`Error`] naming the file and what was wrong, never a
//! panic.
//!
//! ```no_run
//! use std::path::Path;
//!
//! let tensors = prototree_torch::read_state_dict(Path::new("resnet18-f37072fd.pth"))?;
//! println!("{} tensors, conv1: {:?}", tensors.len(), tensors["conv1.weight"].dims());
//! # Ok::<(), prototree_torch::Error>(())
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod pickle;
pub mod safetensors_header;
pub mod state_dict;
pub mod torch_file;

pub use error::{Error, Result};
pub use state_dict::read_state_dict;
pub use torch_file::{FileFormat, StorageType, TorchFile};
