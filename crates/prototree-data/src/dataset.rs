//! A data set of either supported layout, detected from the directory: CUB-200-2011
//! (`images.txt` present) or ImageFolder (`train/` and `test/` folders of class folders,
//! which is also the layout the ProtoTree reference's Stanford Cars preprocessing writes).

use std::path::{Path, PathBuf};

use crate::cub::{CubDataset, Sample, Split};
use crate::image_folder::ImageFolder;
use crate::{Error, Result};

/// The on-disk layout of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// CUB-200-2011: `images.txt`, `classes.txt`, `image_class_labels.txt`,
    /// `train_test_split.txt`, `images/`, optional `bounding_boxes.txt` and `parts/`.
    Cub,
    /// `train/<class>/<image>` and `test/<class>/<image>`.
    ImageFolder,
}

/// An opened data set of either layout.
#[derive(Debug, Clone)]
pub struct Dataset {
    root: PathBuf,
    layout: Layout,
    class_names: Vec<String>,
    samples: Vec<Sample>,
    cub: Option<CubDataset>,
}

impl Dataset {
    /// Opens `root`, detecting its layout.
    pub fn open(root: &Path) -> Result<Self> {
        if root.join("images.txt").is_file() {
            let cub = CubDataset::open(root)?;
            return Ok(Self {
                root: root.to_path_buf(),
                layout: Layout::Cub,
                class_names: cub.class_names().to_vec(),
                samples: cub.samples(Split::All),
                cub: Some(cub),
            });
        }
        if root.join("train").is_dir() && root.join("test").is_dir() {
            let folder = ImageFolder::open_split(root)?;
            return Ok(Self {
                root: root.to_path_buf(),
                layout: Layout::ImageFolder,
                class_names: folder.class_names().to_vec(),
                samples: folder.samples().to_vec(),
                cub: None,
            });
        }
        Err(Error::Invalid {
            path: root.to_path_buf(),
            reason: if root.is_dir() {
                "not a data set: expected CUB-200-2011 files (images.txt, ...) or train/ and test/ folders of class folders".into()
            } else {
                "no such directory".into()
            },
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The detected layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// Class names, index = class index.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names().len()
    }
    /// The images of a split.
    pub fn samples(&self, split: Split) -> Vec<Sample> {
        split.select(&self.samples)
    }
    /// The CUB metadata (part locations, part names), for CUB-layout data sets.
    pub fn cub(&self) -> Option<&CubDataset> {
        self.cub.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_detected_and_others_refused() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
        let cub = Dataset::open(&root.join("cub-tiny")).unwrap();
        assert_eq!(cub.layout(), Layout::Cub);
        assert!(cub.cub().is_some());
        let folder = Dataset::open(&root.join("imagefolder-tiny")).unwrap();
        assert_eq!(folder.layout(), Layout::ImageFolder);
        assert_eq!(folder.num_classes(), cub.num_classes());
        assert_eq!(
            folder.samples(Split::Test).len(),
            cub.samples(Split::Test).len()
        );
        let dir = tempfile::tempdir().unwrap();
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a data set") && err.contains(dir.path().to_str().unwrap()));
        let err = Dataset::open(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such directory"), "{err}");
    }
}
