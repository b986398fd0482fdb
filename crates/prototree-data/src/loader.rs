//! Decoding, caching and batching images for training and evaluation.
//!
//! [`Loader::new`] decodes every image once (in parallel), applies the optional
//! bounding-box crop and the resize, and keeps the RGB pixels in memory;
//! [`Loader::with_views`] takes several [`View`]s of each image (the reference protocol's
//! corner crops), decoding it once. Each
//! [`Loader::epoch`] shuffles (by seed), augments (in parallel, one random stream per
//! position so results do not depend on the thread count) and normalises.

use image::RgbImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::Arc;

use crate::augment::{augment, Augmentation};
use crate::cub::Sample;
use crate::prefetch::Prefetched;
use crate::protocol::{image_ref, CropRect, View};
use crate::transform::{resize_square, to_chw, Normalization};
use crate::{Error, Result};

/// How a [`Loader`] prepares batches.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Square side images are resized to.
    pub image_size: u32,
    /// Crop to the bounding box (when annotated) before resizing.
    pub crop_to_bbox: bool,
    /// Augmentation of each image.
    pub augmentation: Augmentation,
    /// Normalisation after scaling to [0, 1].
    pub normalization: Normalization,
    /// Shuffle each epoch.
    pub shuffle: bool,
    /// Drop a last, incomplete batch.
    pub drop_last: bool,
}

/// A batch of normalised images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBatch {
    /// `(b, 3, h, w)` row-major normalised pixels.
    pub images: Vec<f32>,
    /// Class index per image.
    pub labels: Vec<u32>,
    /// Index of each image in [`Loader::samples`].
    pub sample_indices: Vec<usize>,
    /// Images in the batch.
    pub batch_size: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
}

/// Decodes an image file into RGB8 (grayscale, RGBA and 16-bit images are converted).
pub fn load_rgb(path: &std::path::Path) -> Result<RgbImage> {
    let reader = image::ImageReader::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = reader.with_guessed_format().map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let img = reader.decode().map_err(|e| Error::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(img.to_rgb8())
}

/// Decodes, crops and resizes one sample as the loader does.
pub fn prepare(sample: &Sample, size: u32, crop: bool) -> Result<RgbImage> {
    let view = if crop { View::BBox } else { View::Full };
    let mut views = prepare_views(sample, &[view], size)?;
    Ok(views.pop().map(|(img, _)| img).unwrap_or_default())
}

/// Decodes one sample once and returns each of `views`, resized to `size × size`, with
/// the rectangle it was cropped to (`None`: the whole image).
pub fn prepare_views(sample: &Sample, views: &[View], size: u32) -> Result<Views> {
    let img = load_rgb(&sample.path)?;
    Ok(views
        .iter()
        .map(|v| {
            let (crop, rect) = v.apply(&img, sample.bbox.as_ref());
            (resize_square(&crop, size), rect)
        })
        .collect())
}

/// An image left out by [`Loader::new_skipping_bad`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedImage {
    /// The file.
    pub path: std::path::PathBuf,
    /// Why it could not be used.
    pub reason: String,
}

/// In-memory images with batching. Cloning is cheap: the decoded images are shared.
#[derive(Debug, Clone)]
pub struct Loader {
    cache: Arc<Cache>,
    config: LoaderConfig,
}

/// What a [`Loader`] decoded, shared between its clones (and a prefetching thread).
#[derive(Debug)]
struct Cache {
    samples: Vec<Sample>,
    crops: Vec<Option<CropRect>>,
    images: Vec<RgbImage>,
}

/// The samples of a loader with the views taken of each.
type ViewList = Vec<(Sample, Vec<View>)>;

/// The resized views of one image with their crop rectangles.
type Views = Vec<(RgbImage, Option<CropRect>)>;

/// What [`Loader::build`] decoded: samples (one per view), crops, images, skipped files.
type Decoded = (
    Vec<Sample>,
    Vec<Option<CropRect>>,
    Vec<RgbImage>,
    Vec<SkippedImage>,
);

impl Loader {
    /// Decodes every sample; `progress(done, total)` is called as images finish. The first
    /// image that cannot be read fails the whole loader, naming the file.
    pub fn new(
        samples: Vec<Sample>,
        config: LoaderConfig,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let (loader, _) = Self::build(Self::crop_views(samples, &config), config, false, progress)?;
        Ok(loader)
    }

    /// A loader of the given views of each sample (each image decoded once), in order:
    /// entry `i` of [`Loader::samples`] is the sample of the `i`-th view. `config`'s
    /// `crop_to_bbox` is not used. Fails like [`Loader::new`].
    pub fn with_views(
        samples: Vec<(Sample, Vec<View>)>,
        config: LoaderConfig,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        let (loader, _) = Self::build(samples, config, false, progress)?;
        Ok(loader)
    }

    /// [`Loader::with_views`] that skips images that cannot be read, as
    /// [`Loader::new_skipping_bad`] does.
    pub fn with_views_skipping_bad(
        samples: Vec<(Sample, Vec<View>)>,
        config: LoaderConfig,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Self, Vec<SkippedImage>)> {
        Self::build(samples, config, true, progress)
    }

    /// The one view of each sample that `config.crop_to_bbox` asks for.
    fn crop_views(samples: Vec<Sample>, config: &LoaderConfig) -> ViewList {
        let view = if config.crop_to_bbox {
            View::BBox
        } else {
            View::Full
        };
        samples.into_iter().map(|s| (s, vec![view])).collect()
    }

    /// [`Loader::new`] that skips images that cannot be read, returning them with the
    /// reason. Fails only when no image is left.
    pub fn new_skipping_bad(
        samples: Vec<Sample>,
        config: LoaderConfig,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Self, Vec<SkippedImage>)> {
        let views = Self::crop_views(samples, &config);
        Self::build(views, config, true, progress)
    }

    fn build(
        samples: ViewList,
        config: LoaderConfig,
        skip_bad: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Self, Vec<SkippedImage>)> {
        if config.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        if config.image_size < 8 {
            return Err(Error::Config("image size must be at least 8 pixels".into()));
        }
        let (samples, crops, images, skipped) =
            Self::decode(&samples, config.image_size, skip_bad, progress)?;
        Ok((
            Self {
                cache: Arc::new(Cache {
                    samples,
                    crops,
                    images,
                }),
                config,
            },
            skipped,
        ))
    }

    /// Decodes every sample's views (in parallel chunks, so progress can be reported from
    /// this thread).
    fn decode(
        samples: &[(Sample, Vec<View>)],
        size: u32,
        skip_bad: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Decoded> {
        let total = samples.len();
        let views: usize = samples.iter().map(|(_, v)| v.len()).sum();
        let (mut kept, mut crops, mut images) = (
            Vec::with_capacity(views),
            Vec::with_capacity(views),
            Vec::with_capacity(views),
        );
        let mut skipped = Vec::new();
        let chunk = 64;
        for start in (0..total).step_by(chunk) {
            let end = (start + chunk).min(total);
            let decoded: Vec<Result<Views>> = samples[start..end]
                .par_iter()
                .map(|(s, v)| prepare_views(s, v, size))
                .collect();
            for ((sample, _), result) in samples[start..end].iter().zip(decoded) {
                match result {
                    Ok(views) => {
                        for (img, rect) in views {
                            kept.push(sample.clone());
                            crops.push(rect);
                            images.push(img);
                        }
                    }
                    Err(e) if skip_bad => skipped.push(SkippedImage {
                        path: sample.path.clone(),
                        reason: e.to_string(),
                    }),
                    Err(e) => return Err(e),
                }
            }
            progress(end, total);
        }
        if skip_bad && kept.is_empty() && total > 0 {
            return Err(Error::Config(format!(
                "none of the {total} images could be read (first: {})",
                skipped.first().map(|s| s.reason.as_str()).unwrap_or("")
            )));
        }
        Ok((kept, crops, images, skipped))
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.cache.samples.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.cache.samples.is_empty()
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let b = self.config.batch_size;
        if self.config.drop_last {
            self.len() / b
        } else {
            self.len().div_ceil(b)
        }
    }

    /// The samples, in the loader's order.
    pub fn samples(&self) -> &[Sample] {
        &self.cache.samples
    }

    /// The rectangle image `i` was cropped to before resizing (`None`: the whole image).
    pub fn crop(&self, i: usize) -> Option<CropRect> {
        self.cache.crops.get(i).copied().flatten()
    }

    /// Image `i` as an [`image_ref`] string: its path, with a `#xywh=` fragment when it is
    /// a crop (what projection records name their sources by).
    pub fn image_ref(&self, i: usize) -> Option<String> {
        let s = self.cache.samples.get(i)?;
        Some(image_ref(&s.path, self.crop(i).as_ref()))
    }

    /// The cached, resized image `i`.
    pub fn image(&self, i: usize) -> Option<&RgbImage> {
        self.cache.images.get(i)
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// The batches of one epoch; `seed` drives shuffling and augmentation.
    pub fn epoch(&self, seed: u64) -> Epoch {
        let mut order: Vec<usize> = (0..self.len()).collect();
        if self.config.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        }
        Epoch {
            loader: self.clone(),
            order,
            seed,
            next: 0,
        }
    }

    /// [`Loader::epoch`] prepared up to `depth` batches ahead on a thread of its own, so
    /// augmentation overlaps with whatever consumes the batches; the same batches in the
    /// same order (each image's augmentation depends only on the seed and its position).
    pub fn epoch_prefetched(&self, seed: u64, depth: usize) -> Prefetched {
        Prefetched::new(self.epoch(seed), depth)
    }

    fn make_batch(&self, idx: &[usize], seed: u64, offset: usize) -> ImageBatch {
        let s = self.config.image_size as usize;
        let plane = 3 * s * s;
        let mut images = vec![0f32; idx.len() * plane];
        images
            .par_chunks_mut(plane)
            .zip(idx.par_iter())
            .enumerate()
            .for_each(|(j, (out, &i))| {
                let img = &self.cache.images[i];
                let position = (offset + j) as u64;
                let mut rng =
                    ChaCha8Rng::seed_from_u64(seed ^ position.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                if self.config.augmentation == Augmentation::None {
                    to_chw(img, &self.config.normalization, out);
                } else {
                    let aug = augment(img, self.config.augmentation, &mut rng);
                    to_chw(&aug, &self.config.normalization, out);
                }
            });
        ImageBatch {
            images,
            labels: idx
                .iter()
                .map(|&i| self.cache.samples[i].class_index as u32)
                .collect(),
            sample_indices: idx.to_vec(),
            batch_size: idx.len(),
            height: s,
            width: s,
        }
    }
}

/// The batches of one epoch of a [`Loader`] ([`Loader::epoch`]), in order.
#[derive(Debug, Clone)]
pub struct Epoch {
    loader: Loader,
    order: Vec<usize>,
    seed: u64,
    next: usize,
}

impl Iterator for Epoch {
    type Item = ImageBatch;

    fn next(&mut self) -> Option<ImageBatch> {
        if self.next >= self.loader.num_batches() {
            return None;
        }
        let b = self.loader.config.batch_size;
        let k = self.next;
        self.next += 1;
        let idx = &self.order[k * b..((k + 1) * b).min(self.order.len())];
        Some(self.loader.make_batch(idx, self.seed, k * b))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.loader.num_batches().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Epoch {}
