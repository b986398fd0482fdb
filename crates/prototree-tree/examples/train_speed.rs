//! Times training steps of a small-CNN tree on random images (no data set needed).
//!
//! `cargo run --release -p prototree-tree --example train_speed -- [batch] [size] [depth] [dim] [steps]`

use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{Device, Tensor};
use prototree_tree::{Batch, BatchSource, NoObserver, ProtoTree, TrainConfig, Trainer};

#[path = "../tests/common/mod.rs"]
mod common;

use common::small_cnn;

struct Random {
    batches: usize,
    batch: usize,
    size: usize,
    classes: u32,
}

impl BatchSource for Random {
    fn num_batches(&self) -> usize {
        self.batches
    }
    fn batches(
        &mut self,
        _epoch: usize,
    ) -> Box<dyn Iterator<Item = prototree_tree::Result<Batch>> + '_> {
        let (b, s, k) = (self.batch, self.size, self.classes);
        Box::new((0..self.batches).map(move |i| {
            let images = Tensor::randn(0f32, 1.0, (b, 3, s, s), &Device::Cpu)?;
            let labels: Vec<u32> = (0..b as u32).map(|j| (j + i as u32) % k).collect();
            Ok(Batch {
                images,
                labels: Tensor::new(labels.as_slice(), &Device::Cpu)?,
            })
        }))
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let get = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (batch, size, depth, dim, steps) =
        (get(0, 32), get(1, 64), get(2, 5), get(3, 64), get(4, 10));
    let cfg = small_cnn(depth, dim, 12).check()?;
    let mut model = ProtoTree::new(&cfg, &Device::Cpu, 0)?;
    let tc = TrainConfig {
        epochs: 2,
        freeze_epochs: 0,
        ..TrainConfig::default()
    }
    .check()?;
    let mut trainer = Trainer::new(&tc, &model)?;
    let mut src = Random {
        batches: 2,
        batch,
        size,
        classes: 12,
    };
    trainer.train_epoch(&mut model, &mut src, None, &mut NoObserver)?; // warm-up
    src.batches = steps;
    let start = Instant::now();
    trainer.train_epoch(&mut model, &mut src, None, &mut NoObserver)?;
    let per_step = start.elapsed().as_secs_f64() / steps as f64;
    let x = Tensor::randn(0f32, 1.0, (batch, 3, size, size), &Device::Cpu)?;
    let start = Instant::now();
    for _ in 0..steps {
        model.forward(&x, false)?;
    }
    let fwd = start.elapsed().as_secs_f64() / steps as f64;
    println!(
        "{{\"batch\": {batch}, \"size\": {size}, \"depth\": {depth}, \"dim\": {dim}, \"train_step_ms\": {:.1}, \"eval_forward_ms\": {:.1}, \"train_images_per_s\": {:.0}}}",
        per_step * 1e3,
        fwd * 1e3,
        batch as f64 / per_step
    );
    Ok(())
}
