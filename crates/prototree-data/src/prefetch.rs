//! A bounded prefetch queue over an epoch's batches: a thread of its own prepares the next
//! batches (decoding from the cache, augmenting, normalising) while the consumer trains on
//! the current one.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use crate::loader::{Epoch, ImageBatch};

/// The batches of an [`Epoch`], prepared up to `depth` ahead on a thread of its own
/// ([`crate::Loader::epoch_prefetched`]). The batches and their order are those of the
/// epoch itself. Dropping it early stops the thread after the batch in progress. Where no
/// thread can be started it prepares each batch when asked, as [`Epoch`] does.
#[derive(Debug)]
pub struct Prefetched {
    inner: Inner,
    left: usize,
}

#[derive(Debug)]
enum Inner {
    Thread {
        receiver: Option<Receiver<ImageBatch>>,
        worker: Option<JoinHandle<()>>,
    },
    Inline(Epoch),
}

impl Prefetched {
    /// Starts preparing `epoch`'s batches, keeping at most `depth` (at least 1) ready.
    pub fn new(epoch: Epoch, depth: usize) -> Self {
        let left = epoch.len();
        let (sender, receiver) = sync_channel(depth.max(1));
        // The thread gets its own clone (the image cache is shared), so a failed spawn
        // still leaves `epoch` to run inline.
        let mut batches = epoch.clone();
        let spawned = std::thread::Builder::new()
            .name("prototree-prefetch".into())
            .spawn(move || {
                for batch in &mut batches {
                    // A closed queue: the consumer stopped early.
                    if sender.send(batch).is_err() {
                        break;
                    }
                }
            });
        let inner = match spawned {
            Ok(worker) => Inner::Thread {
                receiver: Some(receiver),
                worker: Some(worker),
            },
            Err(_) => Inner::Inline(epoch),
        };
        Self { inner, left }
    }
}

impl Iterator for Prefetched {
    type Item = ImageBatch;

    fn next(&mut self) -> Option<ImageBatch> {
        if self.left == 0 {
            return None;
        }
        let batch = match &mut self.inner {
            Inner::Inline(epoch) => epoch.next(),
            Inner::Thread { receiver, worker } => {
                match receiver.as_ref().and_then(|r| r.recv().ok()) {
                    Some(batch) => Some(batch),
                    None => {
                        // The thread ended before the epoch did: only a panic does that;
                        // pass it on rather than end the epoch short.
                        if let Some(Err(panic)) = worker.take().map(JoinHandle::join) {
                            std::panic::resume_unwind(panic);
                        }
                        None
                    }
                }
            }
        };
        self.left = if batch.is_some() { self.left - 1 } else { 0 };
        batch
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Prefetched {}

impl Drop for Prefetched {
    fn drop(&mut self) {
        if let Inner::Thread { receiver, worker } = &mut self.inner {
            // Closing the queue first makes the thread's next send fail, so it stops.
            drop(receiver.take());
            if let Some(worker) = worker.take() {
                let _ = worker.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::augment::Augmentation;
    use crate::cub::Sample;
    use crate::loader::{Loader, LoaderConfig};
    use crate::transform::Normalization;

    /// A loader over `n` tiny generated images (written to a temporary folder).
    fn loader(n: usize, batch_size: usize) -> anyhow::Result<(tempfile::TempDir, Loader)> {
        let dir = tempfile::tempdir()?;
        let mut samples = Vec::new();
        for i in 0..n {
            let path = dir.path().join(format!("{i}.png"));
            image::RgbImage::from_fn(12, 10, |x, y| {
                image::Rgb([(x * 20) as u8, (y * 25) as u8, (i * 30 % 256) as u8])
            })
            .save(&path)?;
            samples.push(Sample {
                image_id: i as u32 + 1,
                path,
                class_index: i % 3,
                bbox: None,
                is_train: true,
            });
        }
        let config = LoaderConfig {
            batch_size,
            image_size: 8,
            crop_to_bbox: false,
            augmentation: Augmentation::Flip,
            normalization: Normalization::IMAGENET,
            shuffle: true,
            drop_last: false,
        };
        let loader = Loader::new(samples, config, &mut |_, _| {})?;
        Ok((dir, loader))
    }

    #[test]
    fn prefetched_batches_equal_the_epochs() -> anyhow::Result<()> {
        let (_dir, loader) = loader(11, 3)?;
        for depth in [0, 1, 2, 8] {
            let plain: Vec<_> = loader.epoch(7).collect();
            let prefetched: Vec<_> = loader.epoch_prefetched(7, depth).collect();
            assert_eq!(plain.len(), 4);
            assert_eq!(plain, prefetched, "depth {depth}");
        }
        Ok(())
    }

    #[test]
    fn dropping_early_stops_the_thread() -> anyhow::Result<()> {
        let (_dir, loader) = loader(11, 2)?;
        let mut batches = loader.epoch_prefetched(3, 1);
        assert_eq!(batches.len(), 6);
        let first = batches.next();
        assert_eq!(first, loader.epoch(3).next());
        assert_eq!(batches.len(), 5);
        // Drop joins the thread; the test would hang if it did not stop.
        drop(batches);
        Ok(())
    }
}
