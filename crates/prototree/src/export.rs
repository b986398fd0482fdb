//! Exporting a model's decision tree: Graphviz DOT, self-contained SVG (no Graphviz
//! needed) or JSON.

use std::path::{Path, PathBuf};

use candle_core::Device;
use prototree_interpret::DecisionTree;
use prototree_render::{DotExport, SvgExport};
use prototree_tree::io::write_atomic;
use prototree_tree::{load_model, SavedModel};

use crate::prototype_picture::prototype_pictures;
use crate::{Error, Result};

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Graphviz DOT; prototype patches are written as PNG files next to it.
    Dot,
    /// Self-contained SVG with embedded patch images (pure-Rust layout).
    Svg,
    /// Nested JSON of the decision tree.
    Json,
}

impl std::str::FromStr for ExportFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "dot" | "gv" => Ok(Self::Dot),
            "svg" => Ok(Self::Svg),
            "json" => Ok(Self::Json),
            other => Err(Error::Invalid(format!(
                "unknown export format `{other}` (expected dot, svg or json)"
            ))),
        }
    }
}

/// Files an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportOutcome {
    /// The exported tree.
    pub path: PathBuf,
    /// Patch images written for a DOT export.
    pub patch_images: Vec<PathBuf>,
    /// Decision nodes in the tree.
    pub num_decisions: usize,
    /// Leaves in the tree.
    pub num_leaves: usize,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Exports the decision tree of the model in `model_dir` to `out`.
pub fn export_model_dir(
    model_dir: &Path,
    format: ExportFormat,
    out: &Path,
    device: &Device,
) -> Result<ExportOutcome> {
    let saved = load_model(model_dir, device)?;
    export_model(
        &saved,
        &format!("ProtoTree {}", model_dir.display()),
        format,
        out,
    )
}

/// Exports the decision tree of `saved` to `out`; `title` heads an SVG.
pub fn export_model(
    saved: &SavedModel,
    title: &str,
    format: ExportFormat,
    out: &Path,
) -> Result<ExportOutcome> {
    let tree =
        DecisionTree::from_model(&saved.model, saved.projections(), &saved.meta.class_names)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let mut patch_images = Vec::new();
    let text = match format {
        ExportFormat::Json => serde_json::to_string_pretty(&tree.to_json())
            .map_err(|e| Error::Invalid(e.to_string()))?,
        ExportFormat::Svg => {
            let (pictures, _) = prototype_pictures(saved)?;
            let patches = pictures
                .into_iter()
                .map(|(k, v)| (k, v.patch_png))
                .collect();
            SvgExport::new(&tree)
                .with_patches(&patches)
                .with_title(title)
                .to_string()
        }
        ExportFormat::Dot => {
            let (pictures, _) = prototype_pictures(saved)?;
            let stem = out
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "tree".into());
            let dir = out.with_file_name(format!("{stem}_patches"));
            if !pictures.is_empty() {
                std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
            }
            for (node, pic) in &pictures {
                let path = dir.join(format!("node_{}.png", node.0));
                write_atomic(&path, &pic.patch_png)?;
                patch_images.push(path);
            }
            patch_images.sort();
            let dot = DotExport::new(&tree);
            if pictures.is_empty() {
                dot.to_string()
            } else {
                dot.with_patch_images(&dir).to_string()
            }
        }
    };
    write_atomic(out, text.as_bytes())?;
    Ok(ExportOutcome {
        path: out.to_path_buf(),
        patch_images,
        num_decisions: tree.num_decisions(),
        num_leaves: tree.num_leaves(),
    })
}
