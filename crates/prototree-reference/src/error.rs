//! Errors of the reference importer.

use std::path::PathBuf;

/// Everything that can go wrong while importing a reference checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PyTorch file could not be read (it names the file and the problem).
    #[error(transparent)]
    Torch(#[from] prototree_torch::Error),
    /// The directory holds none of the files the reference writes.
    #[error("{dir}: no reference checkpoint here (looked for {})", expected.join(", "))]
    MissingFiles {
        /// The directory.
        dir: PathBuf,
        /// The files looked for.
        expected: Vec<String>,
    },
    /// The pickled object is not a reference `ProtoTree`.
    #[error("{path}: not a reference ProtoTree (top-level object: {found})")]
    NotAProtoTree {
        /// The file.
        path: PathBuf,
        /// What the file holds instead.
        found: String,
    },
    /// The pickled tree is inconsistent (node numbering, `_out_map`, shapes).
    #[error("{path}: {reason}")]
    BadTree {
        /// The file the tree came from.
        path: PathBuf,
        /// What is inconsistent.
        reason: String,
    },
    /// The backbone of the checkpoint has no counterpart here.
    #[error("unsupported backbone {backbone}: {reason}")]
    UnsupportedBackbone {
        /// The reference's name of the backbone (or a description of its keys).
        backbone: String,
        /// Why, and what is supported.
        reason: String,
    },
    /// A feature of the checkpoint that cannot be imported.
    #[error("unsupported checkpoint: {0}")]
    Unsupported(String),
    /// Tensors that cannot be mapped onto the model, or that the model needs but the
    /// checkpoint lacks.
    #[error("{path}: {problem}: {}", keys.join(", "))]
    Keys {
        /// The file the tensors came from.
        path: PathBuf,
        /// What is wrong with the listed keys.
        problem: String,
        /// The keys.
        keys: Vec<String>,
    },
    /// Class names do not fit the checkpoint.
    #[error("{given} class names given for {expected} classes")]
    ClassNames {
        /// Number of names given.
        given: usize,
        /// Number of classes of the checkpoint.
        expected: usize,
    },
    /// Building or saving our model failed.
    #[error(transparent)]
    Tree(#[from] prototree_tree::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_list_keys() {
        let e = Error::Keys {
            path: "model_state.pth".into(),
            problem: "not used by the imported model".into(),
            keys: vec!["a.b".into(), "c".into()],
        };
        assert_eq!(
            e.to_string(),
            "model_state.pth: not used by the imported model: a.b, c"
        );
    }

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync>() {}
        check::<Error>();
    }
}
