//! Batches of images and labels, and the sources that yield them epoch by epoch.

use candle_core::Tensor;

use crate::{Error, Result};

/// A batch of normalised images and their labels.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `(b, 3, h, w)` f32 images on the model's device.
    pub images: Tensor,
    /// `(b,)` u32 class indices.
    pub labels: Tensor,
}

/// Something that yields batches, one pass per epoch.
pub trait BatchSource {
    /// Batches per pass.
    fn num_batches(&self) -> usize;
    /// The batches of one pass; `epoch` (1-based) seeds shuffling and augmentation.
    fn batches(&mut self, epoch: usize) -> Box<dyn Iterator<Item = Result<Batch>> + '_>;
}

/// One-hot encoding `(b, k)` of u32 labels `(b,)`, checking the range.
pub fn one_hot(labels: &Tensor, num_classes: usize) -> Result<Tensor> {
    let values = labels.to_vec1::<u32>()?;
    let mut data = vec![0f32; values.len() * num_classes];
    for (i, &y) in values.iter().enumerate() {
        if y as usize >= num_classes {
            return Err(Error::LabelOutOfRange {
                label: y,
                num_classes,
            });
        }
        data[i * num_classes + y as usize] = 1.0;
    }
    Ok(Tensor::from_vec(
        data,
        (values.len(), num_classes),
        labels.device(),
    )?)
}
