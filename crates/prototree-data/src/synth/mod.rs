//! Synthetic fine-grained "birds" in CUB-200-2011's layout, with ground-truth parts.
//!
//! Each class is a unique combination of part variants (crest, beak, eye ring, wing bars,
//! tail, and with `parts` 6 or 7 a breast patch and legs; three variants each). Any two
//! classes differ in at least two parts (up to 81 classes of five-part birds; above, up
//! to 243, some differ in one part only) and every
//! variant is shared by several classes, while body colour, pose, scale, position, flip
//! and the cluttered background are drawn from the same distribution for every class: no
//! global cue separates classes, a model has to find the parts. Part locations go into
//! `parts/part_locs.txt` exactly as CUB's, a per-pixel part mask into `segmentations/`, and
//! the class ↔ variant table into `synth.json`.

pub mod parts;
pub mod render;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::io_error;
use crate::{Error, Result};
use parts::{
    choose_classes, class_name, max_classes, DEFAULT_PARTS, MAX_PARTS, PART_NAMES, VARIANT_NAMES,
};
use render::{part_label, render, Pose};

/// Settings of the generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SynthConfig {
    /// Number of classes (2 ..= 3^parts; up to 3^(parts − 1), every two differ in at
    /// least two parts).
    pub classes: usize,
    /// Images per class.
    pub per_class: usize,
    /// Image side in pixels.
    pub size: u32,
    /// Seed: the same seed gives byte-identical files.
    pub seed: u64,
    /// Share of each class's images in the training split.
    pub train_fraction: f32,
    /// Largest rotation of a bird either way, in radians (default 0.26, about 15°).
    pub max_rotation: f32,
    /// Probability that an image gets an occluder: a blob in front of the bird, over one of
    /// its parts (0, the default: none). Occluded pixels are background in the mask, and a
    /// part whose centre is covered is not visible.
    pub occlusion: f32,
    /// Parts per bird, each with three variants: the default 5 (crest, beak, eye, wing,
    /// tail), 6 adds a breast patch, 7 also legs. More parts give classes that differ in
    /// more places, some of them small (the legs are a pixel or two wide at 64 px).
    #[serde(skip_serializing_if = "is_default_parts")]
    pub parts: usize,
}

/// Whether `parts` is the default (left out of `synth.json`, so that default data sets
/// keep their bytes).
fn is_default_parts(parts: &usize) -> bool {
    *parts == DEFAULT_PARTS
}

/// The default largest rotation (radians).
pub const DEFAULT_MAX_ROTATION: f32 = 0.26;

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            classes: 12,
            per_class: 80,
            size: 64,
            seed: 0,
            train_fraction: 0.7,
            max_rotation: DEFAULT_MAX_ROTATION,
            occlusion: 0.0,
            parts: DEFAULT_PARTS,
        }
    }
}

impl SynthConfig {
    /// Validates the settings.
    pub fn check(&self) -> Result<()> {
        if !(DEFAULT_PARTS..=MAX_PARTS).contains(&self.parts) {
            return Err(Error::Config(format!(
                "parts must be between {DEFAULT_PARTS} and {MAX_PARTS}, got {}",
                self.parts
            )));
        }
        let most = max_classes(self.parts);
        if self.classes < 2 || self.classes > most {
            return Err(Error::Config(format!(
                "classes must be between 2 and {most} for birds of {} parts, got {}",
                self.parts, self.classes
            )));
        }
        if self.per_class < 2 {
            return Err(Error::Config(format!(
                "per-class must be at least 2 (one training and one test image), got {}",
                self.per_class
            )));
        }
        if !(32..=1024).contains(&self.size) {
            return Err(Error::Config(format!(
                "size must be between 32 and 1024 pixels, got {}",
                self.size
            )));
        }
        if !(self.max_rotation.is_finite()
            && (0.0..=std::f32::consts::PI).contains(&self.max_rotation))
        {
            return Err(Error::Config(format!(
                "max rotation must be between 0 and 180 degrees, got {}°",
                self.max_rotation.to_degrees()
            )));
        }
        if !(self.occlusion.is_finite() && (0.0..=1.0).contains(&self.occlusion)) {
            return Err(Error::Config(format!(
                "occlusion must be a probability between 0 and 1, got {}",
                self.occlusion
            )));
        }
        if !(self.train_fraction > 0.0 && self.train_fraction < 1.0) {
            return Err(Error::Config(format!(
                "train fraction must be strictly between 0 and 1, got {}",
                self.train_fraction
            )));
        }
        Ok(())
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSummary {
    /// Output directory.
    pub root: PathBuf,
    /// Classes.
    pub classes: usize,
    /// Training images.
    pub train_images: usize,
    /// Test images.
    pub test_images: usize,
}

impl std::fmt::Display for SynthSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} classes, {} training and {} test images in {}",
            self.classes,
            self.train_images,
            self.test_images,
            self.root.display()
        )
    }
}

/// Ground truth written to `synth.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SynthTruth {
    /// Generator settings.
    pub config: SynthConfig,
    /// Part names, index = part id − 1.
    pub parts: Vec<String>,
    /// Variant names per part.
    pub variants: Vec<Vec<String>>,
    /// Per class (index = class id − 1): its name and variant per part.
    pub classes: Vec<(String, Vec<usize>)>,
    /// Segmentation mask labels: 0 background, 1 body, part id + 1 for each part.
    pub mask_labels: Vec<String>,
}

/// Local centre of each part for a given variant (for `part_locs.txt`).
fn part_centre(part: usize, v: &[usize]) -> (f32, f32) {
    let variant = |part: usize| v.get(part).copied().unwrap_or(0);
    match part {
        0 => (0.19, -0.27),
        1 => match variant(1) {
            0 => (0.35, -0.13),
            1 => (0.40, -0.125),
            _ => (0.37, -0.13),
        },
        2 => (0.25, -0.15),
        3 => (-0.03, -0.01),
        4 => match variant(4) {
            1 => (-0.33, 0.0),
            _ => (-0.37, 0.0),
        },
        5 => render::BREAST_CENTRE,
        // The middle of the front leg.
        _ => {
            let [((x0, y0), (x1, y1)), _] = render::legs(variant(6).min(2));
            ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
        }
    }
}

struct Rendered {
    image_png: Vec<u8>,
    mask_png: Vec<u8>,
    bbox: (f32, f32, f32, f32),
    parts: Vec<(f32, f32, bool)>,
}

fn encode_png(img: image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    // Encoding a valid buffer into memory does not fail; an empty file would fail to load.
    let _ = img.write_to(&mut out, image::ImageFormat::Png);
    out.into_inner()
}

fn render_one(cfg: &SynthConfig, index: usize, v: &[usize]) -> Rendered {
    let mut rng = ChaCha8Rng::seed_from_u64(
        cfg.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed,
    );
    let size = cfg.size as f32;
    let mut pose = Pose::random(&mut rng, size, cfg.max_rotation);
    // Drawn only when asked for, so that default data sets keep their bytes.
    if cfg.occlusion > 0.0 && rng.random::<f32>() < cfg.occlusion {
        let part = rng.random_range(0..cfg.parts);
        let (lx, ly) = part_centre(part, v);
        pose.add_occluder(&mut rng, (lx, ly));
    }
    let (img, mask) = render(cfg.size, &pose, v, &mut rng);
    let parts: Vec<(f32, f32, bool)> = (0..cfg.parts)
        .map(|p| {
            // No crest and a plain breast are not there to see.
            let absent = (p == 0 || p == 5) && v.get(p) == Some(&0);
            let visible = !absent;
            if !visible {
                return (0.0, 0.0, false);
            }
            let (lx, ly) = part_centre(p, v);
            let (x, y) = pose.to_image(lx, ly);
            let inside = x >= 0.0 && y >= 0.0 && x < size && y < size && !pose.occluded((x, y));
            if inside {
                (x, y, true)
            } else {
                (0.0, 0.0, false)
            }
        })
        .collect();
    // Bounding box: the bird's pixels in the mask, grown to cover every visible part.
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for (x, y, p) in mask.enumerate_pixels() {
        if p[0] > 0 {
            x0 = x0.min(x as f32);
            y0 = y0.min(y as f32);
            x1 = x1.max(x as f32 + 1.0);
            y1 = y1.max(y as f32 + 1.0);
        }
    }
    for &(x, y, vis) in &parts {
        if vis {
            x0 = x0.min(x.floor());
            y0 = y0.min(y.floor());
            x1 = x1.max(x.floor() + 1.0);
            y1 = y1.max(y.floor() + 1.0);
        }
    }
    if x1 <= x0 || y1 <= y0 {
        (x0, y0, x1, y1) = (0.0, 0.0, size, size);
    }
    Rendered {
        image_png: encode_png(image::DynamicImage::ImageRgb8(img)),
        mask_png: encode_png(image::DynamicImage::ImageLuma8(mask)),
        bbox: (x0, y0, x1 - x0, y1 - y0),
        parts,
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    std::fs::write(path, bytes).map_err(io_error(path))
}

/// The training share of each class (at least one image each way), drawn per class with
/// its own seed: the number per class and, per image, whether it trains.
fn train_split(cfg: &SynthConfig) -> (usize, Vec<bool>) {
    let n_train =
        ((cfg.per_class as f32 * cfg.train_fraction).round() as usize).clamp(1, cfg.per_class - 1);
    let mut is_train = vec![false; cfg.classes * cfg.per_class];
    for c in 0..cfg.classes {
        let mut idx: Vec<usize> = (0..cfg.per_class).collect();
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(
            cfg.seed.wrapping_add(1 + c as u64),
        ));
        for &k in &idx[..n_train] {
            is_train[c * cfg.per_class + k] = true;
        }
    }
    (n_train, is_train)
}

/// `"{first + i} {item}\n"` for each item: the CUB metadata-file layout.
fn numbered_lines<T: std::fmt::Display>(items: impl Iterator<Item = T>, first: usize) -> String {
    items
        .enumerate()
        .map(|(i, item)| format!("{} {item}\n", i + first))
        .collect()
}

/// Generates the data set into `out`; `progress(done, total)` reports rendered images.
pub fn generate(
    cfg: &SynthConfig,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SynthSummary> {
    cfg.check()?;
    let classes = choose_classes(cfg.classes, cfg.parts, cfg.seed).ok_or_else(|| {
        Error::Config(format!(
            "cannot choose {} distinct part combinations",
            cfg.classes
        ))
    })?;
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let folders: Vec<String> = classes
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:03}.{}", i + 1, class_name(v)))
        .collect();
    let total = cfg.classes * cfg.per_class;
    let (n_train, is_train) = train_split(cfg);
    let rel = |i: usize| -> String {
        let (c, k) = (i / cfg.per_class, i % cfg.per_class);
        format!(
            "{}/{}_{:04}.png",
            folders[c],
            class_name(&classes[c]),
            k + 1
        )
    };
    let (mut images, mut labels, mut split, mut boxes, mut locs) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    let chunk = 64;
    for start in (0..total).step_by(chunk) {
        let end = (start + chunk).min(total);
        let rendered: Vec<Rendered> = (start..end)
            .into_par_iter()
            .map(|i| render_one(cfg, i, &classes[i / cfg.per_class]))
            .collect();
        for (off, r) in rendered.iter().enumerate() {
            let i = start + off;
            let id = i + 1;
            let path = rel(i);
            write(&out.join("images").join(&path), &r.image_png)?;
            write(&out.join("segmentations").join(&path), &r.mask_png)?;
            let _ = writeln!(images, "{id} {path}");
            let _ = writeln!(labels, "{id} {}", i / cfg.per_class + 1);
            let _ = writeln!(split, "{id} {}", u8::from(is_train[i]));
            let (x, y, w, h) = r.bbox;
            let _ = writeln!(boxes, "{id} {x:.1} {y:.1} {w:.1} {h:.1}");
            for (p, &(px, py, vis)) in r.parts.iter().enumerate() {
                let _ = writeln!(locs, "{id} {} {px:.1} {py:.1} {}", p + 1, u8::from(vis));
            }
        }
        progress(end, total);
    }
    let classes_txt = numbered_lines(folders.iter(), 1);
    let part_names = &PART_NAMES[..cfg.parts.min(MAX_PARTS)];
    let parts_txt = numbered_lines(part_names.iter(), 1);
    write(&out.join("images.txt"), images.as_bytes())?;
    write(&out.join("classes.txt"), classes_txt.as_bytes())?;
    write(&out.join("image_class_labels.txt"), labels.as_bytes())?;
    write(&out.join("train_test_split.txt"), split.as_bytes())?;
    write(&out.join("bounding_boxes.txt"), boxes.as_bytes())?;
    write(&out.join("parts").join("parts.txt"), parts_txt.as_bytes())?;
    write(&out.join("parts").join("part_locs.txt"), locs.as_bytes())?;
    let mut mask_labels = vec!["background".to_string(), "body".to_string()];
    mask_labels.extend(part_names.iter().map(|p| p.to_string()));
    let labels_txt = numbered_lines(mask_labels.iter(), 0);
    write(
        &out.join("segmentations").join("labels.txt"),
        labels_txt.as_bytes(),
    )?;
    debug_assert_eq!(part_label(1), 2);
    let truth = SynthTruth {
        config: cfg.clone(),
        parts: part_names.iter().map(|s| s.to_string()).collect(),
        variants: VARIANT_NAMES[..part_names.len()]
            .iter()
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .collect(),
        classes: classes.iter().map(|v| (class_name(v), v.clone())).collect(),
        mask_labels,
    };
    let json = serde_json::to_vec_pretty(&truth).map_err(|e| Error::Config(e.to_string()))?;
    write(&out.join("synth.json"), &json)?;
    let train_images = n_train * cfg.classes;
    Ok(SynthSummary {
        root: out.to_path_buf(),
        classes: cfg.classes,
        train_images,
        test_images: total - train_images,
    })
}
