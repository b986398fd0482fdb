//! Batches from a [`prototree_data::Loader`] as tensors for the trainer.

use candle_core::{Device, Tensor};
use prototree_data::Loader;
use prototree_tree::{Batch, BatchSource};

/// Batches prepared ahead of the one being trained on: two keep the trainer fed when one
/// batch takes longer to augment than usual, at the memory of two batches.
const PREFETCH_DEPTH: usize = 2;

/// A [`BatchSource`] over an in-memory image loader; the next batches are augmented on a
/// thread of their own while the current one trains ([`Loader::epoch_prefetched`]).
pub struct LoaderSource<'a> {
    loader: &'a Loader,
    device: Device,
    seed: u64,
}

impl<'a> LoaderSource<'a> {
    /// Batches of `loader` on `device`; `seed` is combined with the epoch for shuffling
    /// and augmentation.
    pub fn new(loader: &'a Loader, device: &Device, seed: u64) -> Self {
        Self {
            loader,
            device: device.clone(),
            seed,
        }
    }
}

impl BatchSource for LoaderSource<'_> {
    fn num_batches(&self) -> usize {
        self.loader.num_batches()
    }

    fn batches(
        &mut self,
        epoch: usize,
    ) -> Box<dyn Iterator<Item = prototree_tree::Result<Batch>> + '_> {
        let seed = self
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(epoch as u64);
        let device = self.device.clone();
        Box::new(
            self.loader
                .epoch_prefetched(seed, PREFETCH_DEPTH)
                .map(move |b| {
                    let images =
                        Tensor::from_vec(b.images, (b.batch_size, 3, b.height, b.width), &device)?;
                    let labels = Tensor::from_vec(b.labels, b.batch_size, &device)?;
                    Ok(Batch { images, labels })
                }),
        )
    }
}

/// A [`BatchSource`] that yields one fixed batch `n` times per pass: for benchmarks and
/// smoke tests of the training step, where data loading must not be measured.
#[derive(Debug, Clone)]
pub struct RepeatedBatch {
    batch: Batch,
    n: usize,
}

impl RepeatedBatch {
    /// `batch`, `n` times per pass.
    pub fn new(batch: Batch, n: usize) -> Self {
        Self { batch, n }
    }
}

impl BatchSource for RepeatedBatch {
    fn num_batches(&self) -> usize {
        self.n
    }

    fn batches(
        &mut self,
        _epoch: usize,
    ) -> Box<dyn Iterator<Item = prototree_tree::Result<Batch>> + '_> {
        let batch = &self.batch;
        Box::new((0..self.n).map(move |_| Ok(batch.clone())))
    }
}
