//! Criterion benchmark of one full training step, backbone included: backbone + add-on +
//! tree forward, NLL, backward, the Adam step of the three parameter groups and the
//! derivative-free leaf update (issue 8: small-cnn and resnet18 at 224 px, batch 16,
//! depth 9, D 256, 200 classes). Random images; CPU.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench -p prototree --bench train_step
//! ```
//! One step of resnet18 takes seconds on a 2-core CPU: the group runs the minimum of 10
//! samples of one step each.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use prototree::candle_core::{Device, Tensor};
use prototree::prelude::*;
use prototree::source::RepeatedBatch;
use prototree::tree::Batch;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZE: usize = 224;
const BATCH: usize = 16;
const DEPTH: usize = 9;
const FEATURES: usize = 256;
const CLASSES: usize = 200;

fn setup(backbone: BackboneKind) -> anyhow::Result<(Learner, RepeatedBatch)> {
    let dev = Device::Cpu;
    let cfg = TreeConfig {
        backbone,
        depth: DEPTH,
        proto_dim: FEATURES,
        num_classes: CLASSES,
    }
    .check()?;
    let model = ProtoTree::new(&cfg, &dev, 0)?;
    // No milestones and no frozen epochs: every epoch trains with the same learning rates.
    let train = TrainConfig {
        epochs: 1,
        batch_size: BATCH,
        freeze_epochs: 0,
        ..TrainConfig::default()
    };
    let learner = Learner::builder(model, &train).build()?;
    let images = Tensor::rand(0f32, 1.0, (BATCH, 3, SIZE, SIZE), &dev)?;
    let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % CLASSES as u32).collect();
    let labels = Tensor::from_vec(labels, BATCH, &dev)?;
    Ok((learner, RepeatedBatch::new(Batch { images, labels }, 1)))
}

fn train_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step_cpu_224px_batch16");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    for backbone in [BackboneKind::SmallCnn, BackboneKind::Resnet18] {
        let (mut learner, mut source) = match setup(backbone) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipping {}: {e}", backbone.name());
                continue;
            }
        };
        group.bench_with_input(
            BenchmarkId::new("step", backbone.name()),
            &backbone,
            |b, _| {
                b.iter(|| {
                    // One epoch of one batch = one training step.
                    learner
                        .train_epoch(&mut source, None, &mut ())
                        .map(|stats| stats.train_loss)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
