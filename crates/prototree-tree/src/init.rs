//! Deterministic parameter initialisation from a seed.
//!
//! candle's CPU random generator cannot be seeded, so every parameter is drawn from a
//! ChaCha stream derived from `(seed, parameter name)`: the same seed gives bit-identical
//! models whatever the creation order. The schemes follow the reference: torchvision's
//! Kaiming-normal (fan-out, ReLU) for backbone convolutions, BatchNorm weight 1 / bias 0,
//! Xavier-normal for the add-on, `N(0.5, 0.1)` for prototypes (spec §1.2, §1.3).

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Result;

/// Name of the add-on weight in the state dict.
pub const ADD_ON_WEIGHT: &str = "_add_on.0.weight";
/// Name of the prototype tensor in the state dict.
pub const PROTOTYPES: &str = "prototype_layer.prototype_vectors";
/// Prefix of backbone parameters in the state dict.
pub const BACKBONE_PREFIX: &str = "_net";

/// A stable 64-bit FNV-1a hash, so seeds do not depend on the std hasher.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A deterministic random stream for `(seed, name)`.
pub fn rng_for(seed: u64, name: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ stable_hash(name.as_bytes()))
}

/// `n` samples of `N(mean, std)` (Box–Muller).
pub fn normal_vec(rng: &mut impl Rng, n: usize, mean: f32, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            let u2: f64 = rng.random::<f64>();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            mean + std * z as f32
        })
        .collect()
}

fn uniform_vec(rng: &mut impl Rng, n: usize, bound: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * bound)
        .collect()
}

/// The initial values of parameter `name` with shape `dims`.
fn initial_values(seed: u64, name: &str, dims: &[usize]) -> Vec<f32> {
    let n: usize = dims.iter().product();
    let mut rng = rng_for(seed, name);
    let leaf = name.rsplit('.').next().unwrap_or(name);
    if name == PROTOTYPES {
        return normal_vec(&mut rng, n, 0.5, 0.1);
    }
    if name == ADD_ON_WEIGHT && dims.len() == 4 {
        let fan_in = dims[1] * dims[2] * dims[3];
        let fan_out = dims[0] * dims[2] * dims[3];
        let std = (2.0 / (fan_in + fan_out) as f32).sqrt();
        return normal_vec(&mut rng, n, 0.0, std);
    }
    match (leaf, dims.len()) {
        ("running_var", _) => vec![1.0; n],
        ("running_mean", _) | ("bias", _) | ("num_batches_tracked", _) => vec![0.0; n],
        ("weight", 1) => vec![1.0; n], // BatchNorm scale
        ("weight", 4) => {
            let fan_out = dims[0] * dims[2] * dims[3];
            normal_vec(&mut rng, n, 0.0, (2.0 / fan_out.max(1) as f32).sqrt())
        }
        ("weight", 2) => uniform_vec(&mut rng, n, 1.0 / (dims[1].max(1) as f32).sqrt()),
        _ => normal_vec(&mut rng, n, 0.0, 0.01),
    }
}

/// Re-initialises every variable of `varmap` deterministically from `seed`.
pub fn initialize(varmap: &VarMap, seed: u64, device: &Device) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| crate::Error::Data("parameter map lock poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        if let Some(var) = data.get(name) {
            let dims = var.dims().to_vec();
            let values = initial_values(seed, name, &dims);
            let t = Tensor::from_vec(values, dims.as_slice(), device)?.to_dtype(var.dtype())?;
            var.set(&t)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_samples_have_the_right_moments() {
        let mut rng = rng_for(7, "x");
        let v = normal_vec(&mut rng, 20000, 0.5, 0.1);
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
        assert!((var.sqrt() - 0.1).abs() < 0.005, "{}", var.sqrt());
        assert_eq!(initial_values(3, "a.bias", &[4]), vec![0.0; 4]);
        assert_eq!(
            initial_values(3, "_net.c.weight", &[2, 3, 3, 3]),
            initial_values(3, "_net.c.weight", &[2, 3, 3, 3])
        );
    }
}
