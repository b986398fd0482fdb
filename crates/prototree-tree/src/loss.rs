//! The training loss: negative log-likelihood of the soft output (spec §1.7).

use candle_core::Tensor;

use crate::Result;

/// Smallest probability inside the log, so that an output that underflowed to 0 gives a
/// large finite loss instead of infinity (identical to the reference whenever its loss is
/// finite).
pub const MIN_PROBABILITY: f64 = f32::MIN_POSITIVE as f64;

/// Per-image NLL `−log ŷ_y`.
///
/// # Shapes
/// - `probabilities`: `(b, k)`, `labels`: `(b,)` u32 → `(b,)`
pub fn nll_per_image(probabilities: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let picked = probabilities.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
    Ok(picked.clamp(MIN_PROBABILITY, 1.0)?.log()?.neg()?)
}

/// Mean NLL over the batch.
pub fn nll_loss(probabilities: &Tensor, labels: &Tensor) -> Result<Tensor> {
    Ok(nll_per_image(probabilities, labels)?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn nll_by_hand() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let p = Tensor::new(&[[0.25f32, 0.75], [0.5, 0.5]], &dev)?;
        let y = Tensor::new(&[1u32, 0], &dev)?;
        let l = nll_loss(&p, &y)?.to_scalar::<f32>()?;
        let want = -((0.75f32).ln() + (0.5f32).ln()) / 2.0;
        assert!((l - want).abs() < 1e-6);
        Ok(())
    }
}
