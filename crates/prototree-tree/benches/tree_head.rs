//! Criterion benchmarks of the tree head at the reference's CUB size: depth 9 (511
//! prototypes), D = 256, 7×7 feature maps, batch 64, 200 classes; soft forward,
//! forward + backward, forward + backward + derivative-free leaf update, and greedy
//! path-only inference.
//!
//! `cargo bench -p prototree-tree --bench tree_head` (set `RAYON_NUM_THREADS` to pin threads).

#![allow(missing_docs)]

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use prototree_tree::one_hot;
use prototree_tree::{loss, Latent, Leaves, ProtoTree, Routing, TreeOutput};

#[path = "../tests/common/mod.rs"]
mod common;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn setup(
    depth: usize,
    dim: usize,
    fmap: usize,
    batch: usize,
    classes: usize,
) -> (ProtoTree, Var, Tensor) {
    let dev = Device::Cpu;
    let cfg = common::small_cnn(depth, dim, classes)
        .check()
        .expect("valid config");
    let mut tree = ProtoTree::new(&cfg, &dev, 0).expect("tree");
    let leaves = Tensor::randn(0f32, 2.0, (cfg.num_leaves(), classes), &dev)
        .and_then(|t| t.relu())
        .expect("leaves");
    tree.set_leaves(Leaves::from_params(leaves).expect("leaves"))
        .expect("set leaves");
    let patches =
        Var::from_tensor(&Tensor::rand(0f32, 1.0, (batch, fmap * fmap, dim), &dev).expect("rand"))
            .expect("var");
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % classes as u32).collect();
    let labels = Tensor::new(labels.as_slice(), &dev).expect("labels");
    (tree, patches, labels)
}

/// The soft forward pass of `tree` over `latent` and the backward pass of its NLL loss on
/// `labels`.
fn forward_backward(tree: &ProtoTree, latent: &Latent, labels: &Tensor) -> (TreeOutput, GradStore) {
    let out = tree.forward_latent(latent).expect("fwd");
    let grads = loss::nll_loss(&out.probabilities, labels)
        .expect("loss")
        .backward()
        .expect("bwd");
    (out, grads)
}

fn tree_head(c: &mut Criterion) {
    let mut group = c.benchmark_group("tree_head_cpu");
    group.sample_size(20);
    for depth in [5usize, 9] {
        let (mut tree, patches, labels) = setup(depth, 256, 7, 64, 200);
        let latent = Latent {
            patches: patches.as_tensor().clone(),
            height: 7,
            width: 7,
        };
        group.bench_with_input(BenchmarkId::new("forward", depth), &depth, |b, _| {
            b.iter(|| {
                tree.forward_latent(&latent)
                    .and_then(|o| Ok(o.probabilities.to_vec2::<f32>()?))
                    .expect("fwd")
            })
        });
        group.bench_with_input(
            BenchmarkId::new("forward_backward", depth),
            &depth,
            |b, _| b.iter(|| forward_backward(&tree, &latent, &labels).1),
        );
        let targets = one_hot(&labels, 200).expect("one-hot");
        let epoch_start = tree.leaves().params().clone();
        group.bench_with_input(
            BenchmarkId::new("forward_backward_leaf_update", depth),
            &depth,
            |b, _| {
                b.iter(|| {
                    let (out, grads) = forward_backward(&tree, &latent, &labels);
                    tree.leaves_mut()
                        .derivative_free_update(
                            &out.leaf_path_probs,
                            &out.probabilities,
                            &targets,
                            &epoch_start,
                            100,
                        )
                        .expect("leaf update");
                    grads
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("greedy_path_only", depth),
            &depth,
            |b, _| {
                b.iter(|| {
                    tree.predict_latent(&latent, Routing::Greedy)
                        .expect("greedy")
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, tree_head);
criterion_main!(benches);
