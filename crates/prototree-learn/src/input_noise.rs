//! Gaussian noise on the normalised training images ([`TrainConfig::input_noise`]):
//! the perturbation of the stability metric (Huang et al., ICCV 2023: σ on the
//! normalised input, clipped at 1.25 σ) applied during training, so that a prototype's
//! best match learns not to move under it.
//!
//! The noise of batch `index` of `epoch` is drawn from ChaCha8 seeded by the run's
//! seed, the epoch and the batch, so a run (and its resume) stays reproducible.
//!
//! [`TrainConfig::input_noise`]: prototree_tree::TrainConfig::input_noise

use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Result;

/// The clip of the noise, as a multiple of σ (Huang et al.: σ 0.2, clipped at 0.25).
pub const CLIP_PER_SIGMA: f64 = 1.25;

/// Mixed into the seed so that the noise does not follow the shuffling's stream.
const NOISE_SALT: u64 = 0x6e01_5e5a_17e0_0001;

/// The seed of the noise of batch `index` in `epoch` of a run seeded `seed`.
pub fn noise_seed(seed: u64, epoch: usize, index: usize) -> u64 {
    seed ^ NOISE_SALT
        ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (index as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
}

/// `images` plus Gaussian noise of standard deviation `sigma`, each value clipped to
/// ±[`CLIP_PER_SIGMA`]·σ, drawn from `seed` (Box–Muller on ChaCha8). `sigma` 0 returns
/// the images unchanged.
pub fn with_input_noise(images: &Tensor, sigma: f64, seed: u64) -> Result<Tensor> {
    if sigma <= 0.0 {
        return Ok(images.clone());
    }
    let n = images.elem_count();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let clip = (CLIP_PER_SIGMA * sigma) as f32;
    let mut noise = Vec::with_capacity(n);
    while noise.len() < n {
        // Box–Muller: two independent standard normals from two uniforms in (0, 1].
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        for z in [r * angle.cos(), r * angle.sin()] {
            if noise.len() < n {
                noise.push(((sigma * z) as f32).clamp(-clip, clip));
            }
        }
    }
    let noise = Tensor::from_vec(noise, images.shape(), images.device())?;
    Ok((images + noise.to_dtype(images.dtype())?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn noise_is_seeded_clipped_and_centred() -> Result<()> {
        let images = Tensor::zeros((4, 3, 16, 16), DType::F32, &Device::Cpu)?;
        let a = with_input_noise(&images, 0.2, 7)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let b = with_input_noise(&images, 0.2, 7)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let c = with_input_noise(&images, 0.2, 8)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(a, b, "the same seed gives the same noise");
        assert_ne!(a, c, "another seed gives other noise");
        assert!(
            a.iter().all(|v| v.abs() <= 0.25 + 1e-6),
            "clipped at 1.25 sigma"
        );
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = a
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        // A normal clipped at 1.25 sigma keeps 66.2 % of its variance (erf by hand:
        // 0.2^2 * 0.662 = 0.0265); 3072 draws give a few per cent of spread.
        assert!((0.0245..0.0285).contains(&var), "variance {var}");
        let same = with_input_noise(&images, 0.0, 7)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert!(same.iter().all(|&v| v == 0.0), "sigma 0 adds nothing");
        Ok(())
    }

    #[test]
    fn batches_and_epochs_get_their_own_noise() {
        let seeds = [
            noise_seed(1, 1, 0),
            noise_seed(1, 1, 1),
            noise_seed(1, 2, 0),
            noise_seed(2, 1, 0),
        ];
        for (i, a) in seeds.iter().enumerate() {
            for b in &seeds[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
