//! The driver: every explanation metric of a saved model on a data set's test split.
//!
//! One pass over the test images computes each prototype's similarity map per image, its
//! nearest patch, that patch's box and the annotated parts inside it ([`activations`]); a
//! second pass with input noise gives stability; further batches of edited images give
//! deletion and perturbation effects ([`edits`]). Projected prototypes are located in
//! their source images ([`sources`]). The figures are then gathered per prototype
//! ([`prototype`]) and over the tree ([`aggregate`]).

mod activations;
mod aggregate;
mod batch;
mod edits;
mod occlusion;
mod prototype;
mod sources;

use std::path::Path;

use candle_core::Device;
use prototree_data::{
    Augmentation, CubDataset, Loader, LoaderConfig, Normalization, Sample, Split,
};
use prototree_tree::geometry::{patch_box, PixelBox};
use prototree_tree::inference::leaf_top_classes;
use prototree_tree::{Observer, ProtoTree, SavedModel};

use crate::annotation::Annotation;
use crate::dataset::AnnotationSource;
use crate::metrics::{ExplanationMetrics, MetricsConfig, Phase};
use crate::perturb::FloatImage;
use crate::{Error, Result};

use batch::BatchResult;

/// [`explanation_metrics_with`] with the default settings.
pub fn explanation_metrics(
    saved: &SavedModel,
    data_dir: &Path,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<ExplanationMetrics> {
    explanation_metrics_with(saved, data_dir, &MetricsConfig::default(), device, obs)
}

/// Measures the explanations of `saved` (ideally pruned and projected) on the test split
/// of the CUB-layout data set in `data_dir`, which needs part annotations (a part mask or
/// keypoints). Each [`Phase`] reaches `obs` as a message naming it and a stage
/// ([`Phase::stage`]) with its progress.
pub fn explanation_metrics_with(
    saved: &SavedModel,
    data_dir: &Path,
    cfg: &MetricsConfig,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<ExplanationMetrics> {
    cfg.check()?;
    let ds = CubDataset::open(data_dir)?;
    let source =
        AnnotationSource::open(&ds)?.with_parts_from_keypoints(cfg.parts_from_keypoints)?;
    let test = TestSet::load(saved, &ds, &source, data_dir, cfg, device, obs)?;
    let acts = activations::activation_pass(&test, obs)?;
    let noisy = activations::noise_pass(&test, &acts.grid, obs)?;
    let gradient = occlusion::occlusion_pass(&test, &acts, obs)?;
    let deletion = edits::deletion_pass(&test, &acts, obs)?;
    let drops = edits::perturbation_pass(&test, &acts, obs)?;
    let sources = sources::projection_sources(saved, &ds, &source, &test)?;
    let inputs = prototype::Inputs::new(&test, &source, &acts, &noisy, &gradient, &drops, &sources);
    let prototypes = (0..test.rows.len())
        .map(|ri| inputs.metrics(ri))
        .collect::<Result<Vec<_>>>()?;
    Ok(aggregate::aggregate(&inputs, &source, deletion, prototypes))
}

/// The test images and everything each pass over them shares: the model, its decision
/// rows and leaf classes, the loaded images with their part annotations, the batches.
struct TestSet<'a> {
    model: &'a ProtoTree,
    cfg: &'a MetricsConfig,
    device: &'a Device,
    /// Input side in pixels.
    size: u32,
    norm: Normalization,
    /// The top class of each leaf.
    leaf_top: Vec<usize>,
    /// The heap indices of the decision nodes, in order: prototype `ri` is `rows[ri]`.
    rows: Vec<usize>,
    loader: Loader,
    anns: Vec<Annotation>,
    labels: Vec<usize>,
    /// Image indices in batches of `cfg.batch_size`.
    chunks: Vec<Vec<usize>>,
}

impl<'a> TestSet<'a> {
    /// Picks the test images (`cfg.max_images` spread evenly), loads them and their
    /// annotations, reporting [`Phase::LoadImages`].
    fn load(
        saved: &'a SavedModel,
        ds: &CubDataset,
        source: &AnnotationSource,
        data_dir: &Path,
        cfg: &'a MetricsConfig,
        device: &'a Device,
        obs: &mut dyn Observer,
    ) -> Result<Self> {
        let model = &saved.model;
        let num_classes = model.num_classes();
        if ds.num_classes() != num_classes {
            return Err(Error::Invalid(format!(
                "{}: the data set has {} classes but the model was trained on {num_classes}",
                data_dir.display(),
                ds.num_classes()
            )));
        }
        let pre = saved.meta.preprocessing;
        let size = pre.image_size;
        let norm = pre.normalization();
        let topo = model.topology();
        let leaf_top = leaf_top_classes(&model.leaves().distributions()?)?;
        let rows = topo.decision_rows();
        let all_test = ds.samples(Split::Test);
        let picks = spread(all_test.len(), cfg.max_images.unwrap_or(usize::MAX));
        let samples: Vec<Sample> = picks.iter().map(|&i| all_test[i].clone()).collect();
        if samples.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no test images",
                data_dir.display()
            )));
        }
        let n_img = samples.len();
        let loader_cfg = LoaderConfig {
            batch_size: cfg.batch_size,
            image_size: size,
            crop_to_bbox: false,
            augmentation: Augmentation::None,
            normalization: norm,
            shuffle: false,
            drop_last: false,
        };
        Phase::LoadImages.started(obs, n_img);
        let loader = Loader::new(samples.clone(), loader_cfg, &mut |_, _| {})?;
        let mut anns: Vec<Annotation> = Vec::with_capacity(n_img);
        for (i, s) in samples.iter().enumerate() {
            anns.push(source.load(ds, s, size)?);
            if (i + 1) % 64 == 0 || i + 1 == n_img {
                obs.stage_progress(i + 1);
            }
        }
        Phase::LoadImages.finished(obs);
        let chunks: Vec<Vec<usize>> = (0..n_img)
            .collect::<Vec<_>>()
            .chunks(cfg.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        Ok(Self {
            model,
            cfg,
            device,
            size,
            norm,
            leaf_top,
            rows,
            loader,
            anns,
            labels: samples.iter().map(|s| s.class_index).collect(),
            chunks,
        })
    }

    fn num_images(&self) -> usize {
        self.anns.len()
    }

    /// Test image `i` as floats in `[0, 1]`.
    fn image(&self, i: usize) -> Result<FloatImage> {
        self.loader
            .image(i)
            .map(FloatImage::from_rgb)
            .ok_or_else(|| Error::Invalid(format!("test image {i} was not loaded")))
    }

    /// Test images `indices` as floats.
    fn images(&self, indices: &[usize]) -> Result<Vec<FloatImage>> {
        indices.iter().map(|&i| self.image(i)).collect()
    }

    /// Normalised CHW floats of `imgs`, one after the other.
    fn chw_of(&self, imgs: &[FloatImage]) -> Vec<f32> {
        let plane = self.plane();
        let mut out = vec![0f32; imgs.len() * plane];
        for (img, o) in imgs.iter().zip(out.chunks_exact_mut(plane)) {
            img.write_chw(&self.norm, o);
        }
        out
    }

    /// Floats per normalised image.
    fn plane(&self) -> usize {
        let side = self.size as usize;
        3 * side * side
    }

    /// Runs the model on normalised CHW images.
    fn run(&self, chw: Vec<f32>, b: usize) -> Result<BatchResult> {
        batch::run_batch(
            self.model,
            chw,
            b,
            self.size as usize,
            &self.leaf_top,
            self.device,
        )
    }

    /// Runs the model on `imgs`.
    fn run_images(&self, imgs: &[FloatImage]) -> Result<BatchResult> {
        self.run(self.chw_of(imgs), imgs.len())
    }
}

/// The latent grid: which input box each latent cell sees.
#[derive(Debug, Clone, Copy)]
struct Grid {
    fh: usize,
    fw: usize,
    size: u32,
}

impl Grid {
    /// The input box of latent cell `cell` (row-major).
    fn box_of(&self, cell: usize) -> PixelBox {
        patch_box(
            (cell / self.fw) as u32,
            (cell % self.fw) as u32,
            self.fh as u32,
            self.fw as u32,
            self.size,
            self.size,
        )
    }
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// `k` indices spread evenly over `0..n` (all when `k ≥ n`).
fn spread(n: usize, k: usize) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    (0..k).map(|i| i * n / k).collect()
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| s / n as f64)
}

fn share(hits: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        hits as f64 / total as f64
    }
}
