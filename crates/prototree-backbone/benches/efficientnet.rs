//! Criterion benchmarks of the EfficientNet-Lite CPU path (issue 4): the fused depthwise
//! convolution alone on the depthwise layers of Lite0 at 128 px (forward, and forward +
//! backward), and Lite0's whole feature extractor at 128 px, batch 32, in training mode
//! (forward, and forward + backward of a sum of the features). Random weights and images.
//!
//! ```text
//! MIMALLOC_PURGE_DELAY=-1 RAYON_NUM_THREADS=2 cargo bench -p prototree-backbone --bench efficientnet
//! ```
//!
//! mimalloc (as in the CLI) with `MIMALLOC_PURGE_DELAY=-1` keeps freed buffers for reuse:
//! with the system allocator every iteration maps its ~50 MB gradients afresh, and on a
//! virtual machine the page faults then cost more than the arithmetic.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::time::Duration;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prototree_backbone::{Backbone, BackboneKind, EfficientNetLite};
use prototree_ops::{depthwise_conv2d_nhwc, same_padding};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 32;
const SIZE: usize = 128;

/// `(side, channels, kernel, stride)` of the first depthwise layer of each Lite0 stage
/// that has expansion, at 128 px.
const DEPTHWISE_LAYERS: [(usize, usize, usize, usize); 5] = [
    (64, 96, 3, 2),
    (32, 144, 5, 2),
    (16, 240, 3, 2),
    (8, 480, 5, 1),
    (8, 672, 5, 2),
];

fn depthwise(c: &mut Criterion) -> prototree_backbone::Result<()> {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("depthwise_conv2d_nhwc");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for (side, ch, k, s) in DEPTHWISE_LAYERS {
        let x = Var::randn(0f32, 1.0, (BATCH, side, side, ch), &dev)?;
        let w = Var::randn(0f32, 0.1, (ch, 1, k, k), &dev)?;
        let pad = same_padding(side, k, s);
        let name = format!("{side}x{side}x{ch}_k{k}_s{s}");
        group.throughput(Throughput::Bytes((BATCH * side * side * ch * 4) as u64));
        group.bench_function(BenchmarkId::new("forward", &name), |b| {
            b.iter(|| depthwise_conv2d_nhwc(x.as_tensor(), w.as_tensor(), s, pad, pad))
        });
        group.bench_function(BenchmarkId::new("forward_backward", &name), |b| {
            b.iter(|| -> prototree_backbone::Result<_> {
                let y = depthwise_conv2d_nhwc(x.as_tensor(), w.as_tensor(), s, pad, pad)?;
                Ok(y.sum_all()?.backward()?)
            })
        });
    }
    group.finish();
    Ok(())
}

fn lite0_features(c: &mut Criterion) -> prototree_backbone::Result<()> {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let net = EfficientNetLite::new(BackboneKind::EfficientnetLite0, vb)?;
    let x = Tensor::rand(-1f32, 1.0, (BATCH, 3, SIZE, SIZE), &dev)?;
    let mut group = c.benchmark_group("efficientnet_lite0_128px_batch32");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("features_train_forward", |b| {
        b.iter(|| net.features(&x, true))
    });
    group.bench_function("features_train_forward_backward", |b| {
        b.iter(|| -> prototree_backbone::Result<_> {
            Ok(net.features(&x, true)?.sum_all()?.backward()?)
        })
    });
    group.finish();
    Ok(())
}

fn benches(c: &mut Criterion) {
    if let Err(e) = depthwise(c) {
        eprintln!("depthwise bench failed: {e}");
    }
    if let Err(e) = lite0_features(c) {
        eprintln!("Lite0 bench failed: {e}");
    }
}

criterion_group!(efficientnet, benches);
criterion_main!(efficientnet);
