//! The planted-pattern task the learner's tests train on: the class is the colour of a
//! small square at a random position on a noisy background.

use candle_core::{Device, Tensor};
use prototree_tree::{Batch, BatchSource};
use rand::{Rng, SeedableRng};

pub const SIZE: usize = 16;
pub const CLASSES: usize = 3;

pub struct Squares {
    images: Vec<Vec<f32>>,
    labels: Vec<u32>,
    batch: usize,
}

impl Squares {
    pub fn new(n: usize, seed: u64, batch: usize) -> Self {
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
