//! Ground truth of a data set in CUB-200-2011 layout, at the model's input size:
//! segmentation masks (`segmentations/<relative image path>.png`, labelled by
//! `segmentations/labels.txt` when it exists, else CUB's soft object masks), part
//! keypoints (`parts/part_locs.txt`), object boxes, and the synthetic birds' class ↔ part
//! variant table (`synth.json`).

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use prototree_data::synth::SynthTruth;
use prototree_data::{CropRect, CubDataset, Sample};

use crate::annotation::{part_label, Annotation, Keypoint, LABEL_BACKGROUND, LABEL_OBJECT};
use crate::parts::MAX_PARTS;
use crate::{Error, Result};

/// Name of the file that labels mask values (`<value> <name>` per line).
pub const MASK_LABELS_FILE: &str = "labels.txt";

/// Threshold of CUB's soft object masks (values 0..=255): object where ≥ 128.
pub const SOFT_MASK_THRESHOLD: u8 = 128;

fn normalise_name(s: &str) -> String {
    s.trim()
        .to_lowercase()
        .chars()
        .map(|c| if c == '_' || c == '-' { ' ' } else { c })
        .collect()
}

/// Reads `segmentations/labels.txt` into a table from mask value to our labels:
/// `background` → background, a part name of `parts/parts.txt` → that part, any other
/// name (`body`, ...) → object. Also says whether any part was found.
pub fn read_mask_labels(path: &Path, part_names: &[String]) -> Result<(Vec<u8>, bool)> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // Values that labels.txt does not list are background.
    let mut table = vec![LABEL_BACKGROUND; 256];
    let mut has_parts = false;
    let parts: Vec<String> = part_names.iter().map(|p| normalise_name(p)).collect();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (value, name) =
            line.split_once(char::is_whitespace)
                .ok_or_else(|| Error::BadAnnotation {
                    path: path.to_path_buf(),
                    reason: format!("line {}: expected `<value> <name>`", i + 1),
                })?;
        let value: u8 = value.parse().map_err(|_| Error::BadAnnotation {
            path: path.to_path_buf(),
            reason: format!("line {}: mask value `{value}` is not in 0..=255", i + 1),
        })?;
        let name = normalise_name(name);
        table[usize::from(value)] = if name == "background" {
            LABEL_BACKGROUND
        } else if let Some(p) = parts.iter().position(|p| *p == name) {
            has_parts = true;
            part_label(p)
        } else {
            LABEL_OBJECT
        };
    }
    Ok((table, has_parts))
}

/// Where the annotations of a CUB-layout data set are, and how to read them.
#[derive(Debug, Clone)]
pub struct AnnotationSource {
    root: PathBuf,
    part_names: Vec<String>,
    label_table: Option<Vec<u8>>,
    mask_has_parts: bool,
    has_keypoints: bool,
    regions_from_keypoints: bool,
    truth: Option<SynthTruth>,
}

impl AnnotationSource {
    /// Reads the annotation metadata of `dataset`. Fails when the data set has neither
    /// part keypoints nor a part-labelled mask.
    pub fn open(dataset: &CubDataset) -> Result<Self> {
        let root = dataset.root().to_path_buf();
        let part_names = dataset.part_names().to_vec();
        if part_names.len() > MAX_PARTS {
            return Err(Error::Invalid(format!(
                "{} part kinds; at most {MAX_PARTS} are supported",
                part_names.len()
            )));
        }
        let labels_path = root.join("segmentations").join(MASK_LABELS_FILE);
        let (label_table, mask_has_parts) = if labels_path.is_file() {
            let (t, p) = read_mask_labels(&labels_path, &part_names)?;
            (Some(t), p)
        } else {
            (None, false)
        };
        let has_keypoints = root.join("parts").join("part_locs.txt").is_file();
        if part_names.is_empty() || !(mask_has_parts || has_keypoints) {
            return Err(Error::Invalid(format!(
                "{}: no part annotations (parts/parts.txt with parts/part_locs.txt or a \
                 part-labelled segmentations/{MASK_LABELS_FILE}); explanation metrics need them",
                root.display()
            )));
        }
        let truth_path = root.join("synth.json");
        let truth = if truth_path.is_file() {
            let bytes = std::fs::read(&truth_path).map_err(|source| Error::Io {
                path: truth_path.clone(),
                source,
            })?;
            Some(serde_json::from_slice::<SynthTruth>(&bytes).map_err(|e| {
                Error::BadAnnotation {
                    path: truth_path.clone(),
                    reason: e.to_string(),
                }
            })?)
        } else {
            None
        };
        Ok(Self {
            root,
            part_names,
            label_table,
            mask_has_parts,
            has_keypoints,
            regions_from_keypoints: false,
            truth,
        })
    }

    /// Takes the parts of every region from the keypoints (`on`), even where the masks
    /// carry part labels; fails when the data set has no `parts/part_locs.txt`.
    pub fn with_parts_from_keypoints(mut self, on: bool) -> Result<Self> {
        if on && !self.has_keypoints {
            return Err(Error::Invalid(format!(
                "{}: parts from keypoints asked for, but there is no parts/part_locs.txt",
                self.root.display()
            )));
        }
        self.regions_from_keypoints = on;
        Ok(self)
    }

    /// Whether the regions' parts come from the keypoints.
    pub fn parts_from_keypoints(&self) -> bool {
        self.regions_from_keypoints || !self.mask_has_parts
    }

    /// Part names, index = part index.
    pub fn part_names(&self) -> &[String] {
        &self.part_names
    }

    /// Whether masks carry part labels (else parts come from keypoints).
    pub fn mask_has_parts(&self) -> bool {
        self.mask_has_parts
    }

    /// The synthetic birds' ground truth (`synth.json`), when present.
    pub fn truth(&self) -> Option<&SynthTruth> {
        self.truth.as_ref()
    }

    /// The segmentation mask file of `sample`: its path under `images/`, under
    /// `segmentations/` with the extension `.png`.
    pub fn mask_path(&self, sample: &Sample) -> Option<PathBuf> {
        let rel = sample.path.strip_prefix(self.root.join("images")).ok()?;
        Some(
            self.root
                .join("segmentations")
                .join(rel)
                .with_extension("png"),
        )
    }

    /// The annotations of `sample` (an image of `dataset`) resized to `size × size` (the
    /// model's input; masks nearest-neighbour, keypoints and boxes scaled).
    pub fn load(&self, dataset: &CubDataset, sample: &Sample, size: u32) -> Result<Annotation> {
        self.load_view(dataset, sample, size, None)
    }

    /// [`Self::load`] of the part `crop` of the image (the whole image for `None`): what
    /// the model saw of a crop, such as the bounding-box crop a prototype was projected
    /// onto. Keypoints outside the crop are left out; the object box is clipped to it.
    pub fn load_view(
        &self,
        dataset: &CubDataset,
        sample: &Sample,
        size: u32,
        crop: Option<CropRect>,
    ) -> Result<Annotation> {
        let mask_path = self.mask_path(sample).filter(|p| p.is_file());
        let (mask, (orig_w, orig_h)) = match &mask_path {
            Some(p) => {
                let img = image::open(p).map_err(|e| Error::BadAnnotation {
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
                let mut luma = img.to_luma8();
                if let Some(r) =
                    crop.filter(|r| r.right <= luma.width() && r.bottom <= luma.height())
                {
                    luma =
                        imageops::crop_imm(&luma, r.left, r.top, r.width(), r.height()).to_image();
                }
                let dims = luma.dimensions();
                let resized = if dims == (size, size) {
                    luma
                } else {
                    imageops::resize(&luma, size, size, FilterType::Nearest)
                };
                let labels: Vec<u8> = match &self.label_table {
                    Some(t) => resized.pixels().map(|p| t[usize::from(p[0])]).collect(),
                    None => resized
                        .pixels()
                        .map(|p| {
                            if p[0] >= SOFT_MASK_THRESHOLD {
                                LABEL_OBJECT
                            } else {
                                LABEL_BACKGROUND
                            }
                        })
                        .collect(),
                };
                (Some(labels), dims)
            }
            None => {
                let dims = match crop {
                    Some(r) => (r.width(), r.height()),
                    None => {
                        image::image_dimensions(&sample.path).map_err(|e| Error::BadAnnotation {
                            path: sample.path.clone(),
                            reason: e.to_string(),
                        })?
                    }
                };
                (None, dims)
            }
        };
        let (ox, oy) = crop.map_or((0.0, 0.0), |r| (r.left as f32, r.top as f32));
        let (cw, ch) = (orig_w.max(1) as f32, orig_h.max(1) as f32);
        let (sx, sy) = (size as f32 / cw, size as f32 / ch);
        let inside = |x: f32, y: f32| (0.0..cw).contains(&x) && (0.0..ch).contains(&y);
        let keypoints = dataset
            .part_locations(sample.image_id)
            .iter()
            .filter(|l| l.visible && l.part_id >= 1 && inside(l.x - ox, l.y - oy))
            .map(|l| Keypoint {
                part: l.part_id as usize - 1,
                x: (l.x - ox) * sx,
                y: (l.y - oy) * sy,
            })
            .collect();
        let object_box = sample.bbox.map(|b| {
            let clip = |v: f32, max: f32| v.clamp(0.0, max);
            [
                clip(b.x - ox, cw) * sx,
                clip(b.y - oy, ch) * sy,
                clip(b.x + b.width - ox, cw) * sx,
                clip(b.y + b.height - oy, ch) * sy,
            ]
        });
        let ann = Annotation {
            width: size,
            height: size,
            num_parts: self.part_names.len(),
            mask_has_parts: self.mask_has_parts && mask.is_some(),
            regions_from_keypoints: self.regions_from_keypoints,
            mask,
            keypoints,
            object_box,
        };
        ann.check()?;
        Ok(ann)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crop_shows_the_annotations_inside_it_shifted_and_scaled() -> anyhow::Result<()> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/cub-tiny");
        let ds = CubDataset::open(&root)?;
        let source = AnnotationSource::open(&ds)?;
        let sample = ds
            .samples(prototree_data::Split::Train)
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no training image"))?;
        let (w, h) = image::image_dimensions(&sample.path)?;
        let whole = source.load_view(&ds, &sample, w, None)?;
        assert_eq!(whole, source.load(&ds, &sample, w)?);
        // The lower-right quarter, shown at its own size: keypoints inside it move by the
        // offset, the others are gone; the mask is that quarter of the whole mask.
        anyhow::ensure!(w == h && w % 2 == 0, "the fixture's images are square");
        let q = w / 2;
        let crop = CropRect {
            left: q,
            top: q,
            right: w,
            bottom: h,
        };
        let quarter = source.load_view(&ds, &sample, q, Some(crop))?;
        let off = q as f32;
        let expected: Vec<(usize, f32, f32)> = whole
            .keypoints
            .iter()
            .filter(|k| k.x >= off && k.y >= off)
            .map(|k| (k.part, k.x - off, k.y - off))
            .collect();
        let got: Vec<(usize, f32, f32)> = quarter
            .keypoints
            .iter()
            .map(|k| (k.part, k.x, k.y))
            .collect();
        assert_eq!(got.len(), expected.len());
        for (a, b) in got.iter().zip(&expected) {
            assert_eq!(a.0, b.0);
            assert!(
                (a.1 - b.1).abs() < 1e-3 && (a.2 - b.2).abs() < 1e-3,
                "{a:?} vs {b:?}"
            );
        }
        if let (Some(m), Some(full)) = (&quarter.mask, &whole.mask) {
            let (q, w) = (q as usize, w as usize);
            for y in 0..q {
                let row = (q + y) * w;
                assert_eq!(m[y * q..(y + 1) * q], full[row + q..row + w], "row {y}");
            }
        }
        if let (Some(b), Some(f)) = (quarter.object_box, whole.object_box) {
            let expect =
                [f[0] - off, f[1] - off, f[2] - off, f[3] - off].map(|v| v.clamp(0.0, off));
            for (x, y) in b.iter().zip(expect) {
                assert!((x - y).abs() < 1e-3, "{b:?} vs {expect:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn mask_labels_by_name() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("labels.txt");
        std::fs::write(&p, "0 background\n1 body\n2 crest\n3 Left_Wing\n")?;
        let parts = vec!["crest".to_string(), "left wing".to_string()];
        let (t, has) = read_mask_labels(&p, &parts)?;
        assert!(has);
        assert_eq!(&t[..5], &[0, 1, 2, 3, 0]);
        std::fs::write(&p, "x body\n")?;
        assert!(read_mask_labels(&p, &parts).is_err());
        Ok(())
    }
}
