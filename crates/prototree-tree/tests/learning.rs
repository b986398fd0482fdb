//! A tiny tree learns a planted-pattern task: the class is the colour of a small square at a
//! random position on a noisy background, so the prototypes have to find the square.

mod common;

use common::small_cnn;

use candle_core::{Device, Tensor};
use prototree_tree::{evaluate, Batch, BatchSource, NoObserver, ProtoTree, TrainConfig, Trainer};
use rand::{Rng, SeedableRng};

const SIZE: usize = 16;
const CLASSES: usize = 3;

struct Squares {
    images: Vec<Vec<f32>>,
    labels: Vec<u32>,
    batch: usize,
}

impl Squares {
    fn new(n: usize, seed: u64, batch: usize) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let class = i % CLASSES;
            let mut img: Vec<f32> = (0..3 * SIZE * SIZE)
                .map(|_| rng.random::<f32>() * 0.6 - 0.3)
                .collect();
            let (y0, x0) = (rng.random_range(0..SIZE - 4), rng.random_range(0..SIZE - 4));
            for y in y0..y0 + 4 {
                for x in x0..x0 + 4 {
                    for c in 0..3 {
                        img[c * SIZE * SIZE + y * SIZE + x] = if c == class { 2.0 } else { -1.0 };
                    }
                }
            }
            images.push(img);
            labels.push(class as u32);
        }
        Self {
            images,
            labels,
            batch,
        }
    }
}

impl BatchSource for Squares {
    fn num_batches(&self) -> usize {
        self.images.len().div_ceil(self.batch)
    }
    fn batches(
        &mut self,
        _epoch: usize,
    ) -> Box<dyn Iterator<Item = prototree_tree::Result<Batch>> + '_> {
        let b = self.batch;
        Box::new((0..self.num_batches()).map(move |i| {
            let lo = i * b;
            let hi = (lo + b).min(self.images.len());
            let flat: Vec<f32> = self.images[lo..hi].concat();
            Ok(Batch {
                images: Tensor::from_vec(flat, (hi - lo, 3, SIZE, SIZE), &Device::Cpu)?,
                labels: Tensor::new(&self.labels[lo..hi], &Device::Cpu)?,
            })
        }))
    }
}

#[test]
fn tiny_tree_beats_chance_by_a_wide_margin() -> anyhow::Result<()> {
    let cfg = small_cnn(3, 16, CLASSES).check()?;
    let mut model = ProtoTree::new(&cfg, &Device::Cpu, 5)?;
    let tc = TrainConfig {
        epochs: 8,
        batch_size: 16,
        lr: 5e-3,
        lr_block: 5e-3,
        lr_net: 5e-3,
        freeze_epochs: 0,
        seed: 5,
        ..TrainConfig::default()
    }
    .check()?;
    let mut trainer = Trainer::new(&tc, &model)?;
    let mut train = Squares::new(96, 1, 16);
    let mut test = Squares::new(48, 2, 16);
    let history = trainer.fit(&mut model, &mut train, None, &mut NoObserver)?;
    assert_eq!(history.len(), 8);
    assert!(history[7].train_loss < history[0].train_loss);
    let report = evaluate(&model, &mut test, &mut NoObserver)?;
    assert!(
        report.accuracy_soft >= 0.8,
        "soft accuracy {} (chance is 0.33)",
        report.accuracy_soft
    );
    // Leaves learnt class evidence: not uniform any more.
    let dists = model
        .leaves()
        .distributions()?
        .max(1)?
        .max(0)?
        .to_scalar::<f32>()?;
    assert!(dists > 0.5);
    Ok(())
}
