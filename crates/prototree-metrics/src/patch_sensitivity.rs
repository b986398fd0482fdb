//! Which pixels a latent patch depends on, where the first-order gradient says nothing:
//! at a projected prototype's source patch.
//!
//! A projected prototype `p` *is* the latent patch `z(x)` of its source image at one cell,
//! so the squared distance `‖z(x) − p‖²` is 0 there and its gradient vanishes; a
//! gradient-based map of the similarity (plain or SmoothGrad) is noise around that point.
//! The second-order term is exact: changing input value `x_j` by `δ` raises the distance
//! by `δ² Σ_c (∂z_c / ∂x_j)²`, the diagonal of `JᵀJ` with `J` the Jacobian of the cell's
//! `d` latent channels. Its map (summed over colour channels) shows the pixels whose change
//! would break the match. One batched backward pass computes it: the image is repeated once
//! per probe vector `v`, copy `k` back-propagates `v_k · z`, and the squared input
//! gradients are summed over the copies. With `d` ≤ [`EXACT_PROBE_LIMIT`] the probes are
//! the `d` unit vectors (exact); above it, [`RANDOM_PROBES`] seeded standard normal
//! vectors (Hutchinson's estimator: `E[(vᵀJ)_j²] = (JᵀJ)_jj`).

use candle_core::{Device, Tensor, Var};
use prototree_tree::geometry::PixelBox;
use prototree_tree::{ProjectionRecord, ProtoTree};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::input_gradients::best_window;
use crate::perturb::standard_normal;
use crate::{Error, Result};

/// Latent widths up to which the map is exact (one probe per channel).
pub const EXACT_PROBE_LIMIT: usize = 64;

/// Random probes for wider latents.
pub const RANDOM_PROBES: usize = 16;

/// The sensitivity map (`size × size`, row-major) of latent cell `cell` (row-major over
/// the feature map) of the normalised CHW image `chw` (`3 × size × size`): `Σ_c (∂z_c/∂x)²`
/// summed over colour channels (see the module docs). `seed` drives the random probes of
/// latents wider than [`EXACT_PROBE_LIMIT`].
pub fn patch_sensitivity_map(
    model: &ProtoTree,
    chw: &[f32],
    size: usize,
    cell: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<f32>> {
    let plane = size * size;
    if chw.len() != 3 * plane {
        return Err(Error::Invalid(format!(
            "patch sensitivity needs one 3×{size}×{size} image, got {} values",
            chw.len()
        )));
    }
    let d = model.config().proto_dim();
    let probes = probe_vectors(d, seed);
    let k = probes.len() / d;
    let batch: Vec<f32> = std::iter::repeat_n(chw, k).flatten().copied().collect();
    let input = Var::from_tensor(&Tensor::from_vec(batch, (k, 3, size, size), device)?)?;
    let latent = model.latent(input.as_tensor(), false)?;
    let cells = latent.height * latent.width;
    if cell >= cells {
        return Err(Error::Invalid(format!(
            "patch sensitivity: cell {cell} of a {}×{} feature map",
            latent.height, latent.width
        )));
    }
    let z = latent.patches.narrow(1, cell, 1)?.reshape((k, d))?;
    let v = Tensor::from_vec(probes, (k, d), device)?;
    let grads = (&z * &v)?.sum_all()?.backward()?;
    let g = grads
        .get(input.as_tensor())
        .ok_or_else(|| Error::Invalid("no gradient reached the input".into()))?;
    Ok(g.sqr()?.sum(0)?.sum(0)?.flatten_all()?.to_vec1::<f32>()?)
}

/// The box, of the patch box's size, where projection `record`'s patch has the most
/// sensitivity ([`patch_sensitivity_map`]) on its source image `chw` (normalised CHW,
/// `3 × size × size`, as the model saw it): the region the match depends on. `seed`
/// (mixed with the record's row) drives the random probes of wide latents.
pub fn source_sensitivity_box(
    model: &ProtoTree,
    chw: &[f32],
    size: usize,
    record: &ProjectionRecord,
    seed: u64,
    device: &Device,
) -> Result<PixelBox> {
    let patch = crate::localization::source_box(record, size as u32);
    let cell = record.patch_row as usize * record.fmap_width as usize + record.patch_col as usize;
    let seed = seed ^ (u64::from(record.row) << 8);
    let map = patch_sensitivity_map(model, chw, size, cell, seed, device)?;
    let (w, h) = (
        (patch[2] - patch[0]) as usize,
        (patch[3] - patch[1]) as usize,
    );
    Ok(best_window(&map, size, w, h))
}

/// The probe vectors, `k × d` row-major: the unit vectors when `d` ≤
/// [`EXACT_PROBE_LIMIT`], else [`RANDOM_PROBES`] seeded standard normal vectors.
fn probe_vectors(d: usize, seed: u64) -> Vec<f32> {
    if d <= EXACT_PROBE_LIMIT {
        let mut v = vec![0f32; d * d];
        for c in 0..d {
            v[c * d + c] = 1.0;
        }
        v
    } else {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..RANDOM_PROBES * d)
            .map(|_| standard_normal(&mut rng))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map equals `Σ_c (∂z_c/∂x_j)²` by central finite differences of the cell's
    /// latent vector, on a few input values, summed over colour channels.
    #[test]
    fn the_map_is_the_squared_jacobian_by_finite_differences() -> anyhow::Result<()> {
        let tree = prototree_tree::testing::small_cnn_tree(2, 4, 3, 0)?;
        let size = 16;
        let chw: Vec<f32> = (0..3 * size * size)
            .map(|i| (((i * 7919) % 255) as f32 / 255.0 - 0.5) * 2.0)
            .collect();
        let cpu = &Device::Cpu;
        let cell = 1;
        let map = patch_sensitivity_map(&tree, &chw, size, cell, 0, cpu)?;
        assert_eq!(map.len(), size * size);
        let latent_at = |x: &[f32]| -> anyhow::Result<Vec<f64>> {
            let t = Tensor::from_vec(x.to_vec(), (1, 3, size, size), cpu)?
                .to_dtype(candle_core::DType::F32)?;
            let l = tree.latent(&t, false)?;
            Ok(l.patches
                .narrow(1, cell, 1)?
                .flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(f64::from)
                .collect())
        };
        let plane = size * size;
        // The pixel with the largest value, and two others.
        let top = (0..plane)
            .max_by(|a, b| map[*a].total_cmp(&map[*b]))
            .unwrap_or(0);
        for pixel in [top, 0, plane / 2 + 3] {
            let mut expected = 0f64;
            for colour in 0..3 {
                let j = colour * plane + pixel;
                let h = 1e-2f32;
                let (mut up, mut down) = (chw.clone(), chw.clone());
                up[j] += h;
                down[j] -= h;
                let (a, b) = (latent_at(&up)?, latent_at(&down)?);
                expected += a
                    .iter()
                    .zip(&b)
                    .map(|(a, b)| ((a - b) / (2.0 * f64::from(h))).powi(2))
                    .sum::<f64>();
            }
            let got = f64::from(map[pixel]);
            assert!(
                (got - expected).abs() <= 0.05 * expected.max(1e-6) + 1e-7,
                "pixel {pixel}: {got} vs finite differences {expected}"
            );
        }
        assert!(map[top] > 0.0);
        assert!(patch_sensitivity_map(&tree, &chw[1..], size, cell, 0, cpu).is_err());
        assert!(patch_sensitivity_map(&tree, &chw, size, 999, 0, cpu).is_err());
        Ok(())
    }

    /// Above the exact limit the random probes estimate the same map: over every pixel it
    /// correlates with the exact squared Jacobian (central differences).
    #[test]
    fn random_probes_estimate_the_map_of_wide_latents() -> anyhow::Result<()> {
        let d = EXACT_PROBE_LIMIT + 16;
        let tree = prototree_tree::testing::small_cnn_tree(1, d, 2, 3)?;
        let size = 16;
        let plane = size * size;
        let chw: Vec<f32> = (0..3 * plane)
            .map(|i| (((i * 104_729) % 251) as f32 / 251.0 - 0.5) * 2.0)
            .collect();
        let cpu = &Device::Cpu;
        let cell = 0;
        let map = patch_sensitivity_map(&tree, &chw, size, cell, 11, cpu)?;
        // All perturbed images in one batch: (pixel, colour, ±).
        let h = 1e-2f32;
        let mut batch = Vec::with_capacity(plane * 6 * 3 * plane);
        for pixel in 0..plane {
            for colour in 0..3 {
                for sign in [1.0f32, -1.0] {
                    let mut x = chw.clone();
                    x[colour * plane + pixel] += sign * h;
                    batch.extend(x);
                }
            }
        }
        let t = Tensor::from_vec(batch, (plane * 6, 3, size, size), cpu)?;
        let z = tree
            .latent(&t, false)?
            .patches
            .narrow(1, cell, 1)?
            .reshape((plane * 6, d))?
            .to_vec2::<f32>()?;
        let exact: Vec<f64> = (0..plane)
            .map(|pixel| {
                (0..3)
                    .map(|colour| {
                        let k = (pixel * 3 + colour) * 2;
                        z[k].iter()
                            .zip(&z[k + 1])
                            .map(|(a, b)| (f64::from(a - b) / (2.0 * f64::from(h))).powi(2))
                            .sum::<f64>()
                    })
                    .sum()
            })
            .collect();
        let est: Vec<f64> = map.iter().map(|v| f64::from(*v)).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (me, mx) = (mean(&est), mean(&exact));
        let cov: f64 = est
            .iter()
            .zip(&exact)
            .map(|(a, b)| (a - me) * (b - mx))
            .sum();
        let var = |v: &[f64], m: f64| v.iter().map(|a| (a - m).powi(2)).sum::<f64>();
        let corr = cov / (var(&est, me) * var(&exact, mx)).sqrt();
        assert!(corr > 0.8, "correlation {corr}");
        Ok(())
    }

    #[test]
    fn probes_are_unit_vectors_up_to_the_limit_then_seeded_normals() {
        let exact = probe_vectors(3, 0);
        assert_eq!(exact, vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]);
        let wide = EXACT_PROBE_LIMIT + 1;
        let a = probe_vectors(wide, 5);
        assert_eq!(a.len(), RANDOM_PROBES * wide);
        assert_eq!(a, probe_vectors(wide, 5));
        assert_ne!(a, probe_vectors(wide, 6));
    }
}
