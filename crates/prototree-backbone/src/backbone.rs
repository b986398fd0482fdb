//! The [`Backbone`] trait every feature extractor implements.

use candle_core::Tensor;

use crate::{BackboneKind, Error, Result};

/// Checks that `x` is an image batch `(b, 3, h, w)` with sides of at least `min_size`.
pub fn check_input(x: &Tensor, min_size: usize) -> Result<()> {
    let dims = x.dims();
    if dims.len() != 4 || dims[1] != 3 || dims[2] < min_size || dims[3] < min_size {
        return Err(Error::BadInput {
            min_size,
            got: dims.to_vec(),
        });
    }
    Ok(())
}

/// A CNN feature extractor cut before global pooling.
///
/// Parameters are created through the `VarBuilder` given to the constructor, with
/// PyTorch state_dict names relative to it (`conv1.weight`, `layer1.0.bn1.running_mean`, ...).
pub trait Backbone: Send + Sync {
    /// The architecture.
    fn kind(&self) -> BackboneKind;

    /// The feature map before global pooling.
    ///
    /// `train` selects batch statistics (and running-stat updates) in BatchNorm layers.
    ///
    /// # Shapes
    /// - `x`: `(b, 3, h, w)`, already normalised with [`BackboneKind::normalization`]
    /// - returns `(b, c, h / s, w / s)` with `c` = [`Backbone::out_channels`] and `s` the stride
    fn features(&self, x: &Tensor, train: bool) -> Result<Tensor>;

    /// Channels of the feature map.
    fn out_channels(&self) -> usize;

    /// Name prefixes (relative to the backbone's `VarBuilder`) of the parameters trained
    /// with the add-on's learning rate from the first epoch (the reference's `layer4.2` of
    /// ResNet-50); every other backbone parameter is frozen for the first epochs. A prefix
    /// covers the names equal to it or continuing with `.` (`_bn1` covers `_bn1.weight`,
    /// not `_blocks.3._bn1.weight`).
    fn last_block_prefixes(&self) -> Vec<String> {
        Vec::new()
    }
}
