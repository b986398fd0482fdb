//! Limits on every size that comes from a file or a flag (issue 20).
//!
//! Files come from strangers: a well-formed `config.json`, `tree.bin`, `model.safetensors`
//! or `.pth` checkpoint can claim any size in a single number. Every such number is
//! checked here, before anything is allocated, against one of three kinds of limit:
//!
//! - a documented hard maximum ([`maxima`]), far above any real use;
//! - a bound derived from the file's own length (a pickle string cannot be longer than the
//!   bytes left in the stream; a zip entry cannot hold more than the archive);
//! - the machine's memory ([`memory`]): `MemAvailable` and the process's address-space
//!   limit, overridable with `PROTOTREE_MEMORY_LIMIT`.
//!
//! A refused value is a [`LimitError`] whose `Display` is one line naming the file (or
//! flag), the field, the value and the limit. Floating-point settings must be finite and
//! in range ([`check::finite_in`]).
//!
//! ```
//! use prototree_limits::{check, maxima};
//!
//! let err = check::at_most("config.json", "preprocessing.image_size", 1_000_000, maxima::MAX_IMAGE_SIDE)
//!     .unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "config.json: `preprocessing.image_size` is 1000000, over the limit of 4096",
//! );
//! ```
#![warn(missing_docs)]

pub mod check;
pub mod error;
pub mod maxima;
pub mod memory;
pub mod read;

pub use error::{Error, LimitError, Result};
pub use read::read_bounded;
