//! ImageFolder data sets: `root/train/<class>/<image>` and `root/test/<class>/<image>`, or a
//! single `root/<class>/<image>` tree. Classes are the sorted folder names.

use std::path::{Path, PathBuf};

use crate::cub::Sample;
use crate::error::io_error;
use crate::{Error, Result};

/// Image file extensions that are read.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "gif"];

/// A folder-per-class data set.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    class_names: Vec<String>,
    samples: Vec<Sample>,
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_error(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

impl ImageFolder {
    /// Reads `root/<class>/<image>`; every image gets `is_train`.
    pub fn open(root: &Path, is_train: bool) -> Result<Self> {
        Self::open_with_classes(root, is_train, None)
    }

    /// Reads `root/train` and `root/test` with the classes of `root/train`; a test class
    /// unknown to training is an error.
    pub fn open_split(root: &Path) -> Result<Self> {
        let train = Self::open(&root.join("train"), true)?;
        let test = Self::open_with_classes(&root.join("test"), false, Some(&train.class_names))?;
        let mut samples = train.samples;
        let offset = samples.len() as u32;
        samples.extend(test.samples.into_iter().map(|mut s| {
            s.image_id += offset;
            s
        }));
        Ok(Self {
            class_names: train.class_names,
            samples,
        })
    }

    fn open_with_classes(root: &Path, is_train: bool, known: Option<&[String]>) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::Invalid {
                path: root.to_path_buf(),
                reason: "not a directory".into(),
            });
        }
        let dirs: Vec<PathBuf> = sorted_entries(root)?
            .into_iter()
            .filter(|p| p.is_dir())
            .collect();
        if dirs.is_empty() {
            return Err(Error::Invalid {
                path: root.to_path_buf(),
                reason: "no class folders".into(),
            });
        }
        let class_names: Vec<String> = match known {
            Some(k) => k.to_vec(),
            None => dirs
                .iter()
                .map(|d| {
                    d.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                })
                .collect(),
        };
        let mut samples = Vec::new();
        for dir in &dirs {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let class_index =
                class_names
                    .iter()
                    .position(|c| *c == name)
                    .ok_or_else(|| Error::Invalid {
                        path: dir.clone(),
                        reason: format!("class `{name}` does not exist in the training folder"),
                    })?;
            let images: Vec<PathBuf> = sorted_entries(dir)?
                .into_iter()
                .filter(|p| is_image(p))
                .collect();
            if images.is_empty() {
                return Err(Error::Invalid {
                    path: dir.clone(),
                    reason: "class folder contains no images".into(),
                });
            }
            for path in images {
                samples.push(Sample {
                    image_id: samples.len() as u32 + 1,
                    path,
                    class_index,
                    bbox: None,
                    is_train,
                });
            }
        }
        Ok(Self {
            class_names,
            samples,
        })
    }

    /// Class names, index = class index.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    /// All images.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
}
