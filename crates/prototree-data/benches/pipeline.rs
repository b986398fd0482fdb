//! Criterion benchmark of the input pipeline alone (issue 8), in images per second:
//! decoding + resizing PNG files (`Loader::new`, parallel) and one epoch of batches with
//! and without the reference augmentation (`Loader::epoch`, parallel). 256 synthetic
//! birds rendered at 448 px, resized to 224 px, batch 64; CPU.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench -p prototree-data --bench pipeline
//! ```
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prototree_data::{
    generate, Augmentation, CubDataset, Loader, LoaderConfig, Normalization, Sample, Split,
    SynthConfig,
};

const IMAGES: usize = 256;
const SIZE: u32 = 224;
const BATCH: usize = 64;

fn config(augmentation: Augmentation) -> LoaderConfig {
    LoaderConfig {
        batch_size: BATCH,
        image_size: SIZE,
        crop_to_bbox: false,
        augmentation,
        normalization: Normalization::IMAGENET,
        shuffle: true,
        drop_last: false,
    }
}

/// The birds rendered into a temporary directory (kept while the bench runs), as samples.
fn samples() -> anyhow::Result<(tempfile::TempDir, Vec<Sample>)> {
    let dir = tempfile::tempdir()?;
    let classes = 16;
    let cfg = SynthConfig {
        classes,
        per_class: IMAGES.div_ceil(classes),
        size: 2 * SIZE,
        seed: 0,
        train_fraction: 0.5,
        ..Default::default()
    };
    generate(&cfg, dir.path(), &mut |_, _| {})?;
    let samples = CubDataset::open(dir.path())?.samples(Split::All);
    Ok((dir, samples))
}

fn pipeline(c: &mut Criterion) {
    let Ok((_dir, samples)) = samples().inspect_err(|e| {
        eprintln!("pipeline bench: could not generate images: {e}");
    }) else {
        return;
    };
    let mut group = c.benchmark_group("input_pipeline_cpu_224px");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(samples.len() as u64));
    group.bench_function("decode_resize", |b| {
        b.iter(|| {
            Loader::new(samples.clone(), config(Augmentation::None), &mut |_, _| {})
                .map(|l| l.num_batches())
        })
    });
    for (name, augmentation) in [
        ("batches_no_augmentation", Augmentation::None),
        ("batches_reference_augmentation", Augmentation::Reference),
    ] {
        let loader = match Loader::new(samples.clone(), config(augmentation), &mut |_, _| {}) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("pipeline bench: could not load images: {e}");
                return;
            }
        };
        let mut epoch = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                epoch += 1;
                loader
                    .epoch(epoch)
                    .map(|batch| batch.batch_size)
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
