//! The committed fixtures the CLI tests run on: the tiny CUB-layout data set, and the
//! reference's checkpoints (fixtures/reference) with what the reference computed on them.
//! Each test binary uses a part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The committed fixtures folder (`fixtures/` at the workspace root).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The tiny CUB-layout data set (`fixtures/cub-tiny`), as a command-line argument.
pub fn cub_tiny() -> String {
    fixtures().join("cub-tiny").display().to_string()
}

/// Every routing of `prototree predict --routing`, with its key in `expected.json`.
pub const ROUTINGS: [(&str, &str); 3] = [
    ("soft", "soft"),
    ("greedy", "greedy"),
    ("max-leaf", "max_leaf"),
];

/// A reference checkpoint fixture: its directory and its `expected.json`.
pub struct ReferenceFixture {
    /// `fixtures/reference/<name>`.
    pub dir: PathBuf,
    /// The reference's image size, test images, probabilities and predictions.
    pub expected: serde_json::Value,
}

impl ReferenceFixture {
    /// The fixture `fixtures/reference/<name>`.
    pub fn open(name: &str) -> anyhow::Result<Self> {
        let dir = fixtures().join("reference").join(name);
        let expected = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json"))?)?;
        Ok(Self { dir, expected })
    }

    /// The arguments of `prototree import` of this checkpoint into `out`, at the
    /// reference's image size.
    pub fn import_args(&self, out: &str) -> Vec<String> {
        let size = self.expected["image_size"]
            .as_u64()
            .unwrap_or(0)
            .to_string();
        let dir = self.dir.display().to_string();
        [
            "import",
            "--reference",
            &dir,
            "--out",
            out,
            "--image-size",
            &size,
        ]
        .map(String::from)
        .to_vec()
    }

    /// The paths of the reference's test images.
    pub fn images(&self) -> Vec<String> {
        self.expected["images"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .map(|p| self.dir.join(p).display().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Runs `prototree --quiet ARGS` in `dir` (the current directory when `None`), returning
/// its stdout; an error with its stderr when it fails.
pub fn run_quiet_in(dir: Option<&Path>, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_prototree"));
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd.arg("--quiet").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "prototree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}
