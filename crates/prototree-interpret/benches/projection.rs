//! Criterion benchmark of prototype projection over 1,000 training images (issue 8):
//! backbone + add-on forward of every image, squared distances to every decision
//! prototype, and the class-constrained nearest-patch search. The demo's model shape
//! (small CNN, 64 px, depth 5, D 64, 12 classes), random images and leaves; CPU.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench -p prototree-interpret --bench projection
//! ```
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::time::Duration;

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prototree_backbone::BackboneKind;
use prototree_interpret::project;
use prototree_tree::{Batch, BatchSource, Leaves, ProtoTree, TreeConfig};

const IMAGES: usize = 1000;
const BATCH: usize = 64;
const SIZE: usize = 64;
const CLASSES: usize = 12;
const DEPTH: usize = 5;

/// `IMAGES` random images in batches of `BATCH`, labels cycling through the classes.
struct RandomImages {
    batches: Vec<Batch>,
}

impl BatchSource for RandomImages {
    fn num_batches(&self) -> usize {
        self.batches.len()
    }

    fn batches(
        &mut self,
        _epoch: usize,
    ) -> Box<dyn Iterator<Item = prototree_tree::Result<Batch>> + '_> {
        Box::new(self.batches.iter().cloned().map(Ok))
    }
}

fn setup() -> anyhow::Result<(ProtoTree, RandomImages, Vec<String>)> {
    let dev = Device::Cpu;
    let cfg = TreeConfig {
        backbone: BackboneKind::SmallCnn,
        depth: DEPTH,
        proto_dim: 64,
        num_classes: CLASSES,
    }
    .check()?;
    let mut model = ProtoTree::new(&cfg, &dev, 0)?;
    // Random leaves, so that the leaves' top classes (the projection's class
    // constraint) differ between subtrees as in a trained tree.
    let leaf_params = Tensor::rand(0f32, 4.0, (1 << DEPTH, CLASSES), &dev)?;
    model.set_leaves(Leaves::from_params(leaf_params)?)?;
    let mut batches = Vec::new();
    let mut start = 0;
    while start < IMAGES {
        let b = BATCH.min(IMAGES - start);
        let images = Tensor::rand(0f32, 1.0, (b, 3, SIZE, SIZE), &dev)?;
        let labels: Vec<u32> = (start..start + b).map(|i| (i % CLASSES) as u32).collect();
        let labels = Tensor::from_vec(labels, b, &dev)?;
        batches.push(Batch { images, labels });
        start += b;
    }
    let paths = (0..IMAGES).map(|i| format!("image_{i}.png")).collect();
    Ok((model, RandomImages { batches }, paths))
}

fn projection(c: &mut Criterion) {
    let (mut model, mut source, paths) = match setup() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("projection bench setup failed: {e}");
            return;
        }
    };
    let original = match model.prototypes() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("projection bench setup failed: {e}");
            return;
        }
    };
    let mut group = c.benchmark_group("projection_cpu");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(IMAGES as u64));
    group.bench_function("small_cnn_64px_1000_images", |b| {
        b.iter(|| {
            // Every sample projects the same, unprojected prototypes.
            let restored = model.set_prototypes(&original);
            let records = project(&mut model, &mut source, &paths, &mut |_, _| {});
            (restored.is_ok(), records.map(|r| r.len()))
        })
    });
    group.finish();
}

criterion_group!(benches, projection);
criterion_main!(benches);
