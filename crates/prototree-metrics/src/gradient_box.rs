//! A sharper region for a prototype's match: the box of the patch's size placed where the
//! prototype's similarity depends most on the input pixels.
//!
//! The patch box of the reference (`prototree_tree::geometry::patch_box`) is where the
//! nearest latent cell sits; the cell's receptive field is much wider (38 px for the small
//! CNN at stride 8), so a cell beside the wing can match a wing prototype while its box
//! shows background. The **gradient box** keeps the box's size but moves it to the window
//! holding the most of `|∂ similarity / ∂ pixel|` (summed over colour channels): the
//! pixels the match actually depends on. One forward pass per batch and one backward pass
//! per prototype give the maps of a whole batch (in eval mode the images do not interact).

use candle_core::{Device, Tensor, Var};
use prototree_tree::geometry::PixelBox;
use prototree_tree::ProtoTree;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::perturb::standard_normal;
use crate::{Error, Result};

/// How the gradient is smoothed: the mean of `|gradient|` over `samples` copies of each
/// image with Gaussian noise of `sigma` times the image's value range (SmoothGrad); one
/// sample is the plain gradient of the image itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientSmoothing {
    /// Copies per image (at least 1).
    pub samples: usize,
    /// Noise as a share of the image's value range (unused for one sample).
    pub sigma: f32,
    /// Seed of the noise; image `i` of the batch draws from `seed ^ f(i)`.
    pub seed: u64,
}

impl GradientSmoothing {
    /// The plain gradient.
    pub const PLAIN: GradientSmoothing = GradientSmoothing {
        samples: 1,
        sigma: 0.0,
        seed: 0,
    };
}

/// Per prototype row of `rows` (outer) and image (inner), the input-gradient map
/// (`size × size`, row-major) of the row's similarity on the normalised CHW images `chw`
/// (`b × 3 × size × size`): `|∂ routing probability / ∂ pixel|` summed over channels,
/// averaged over `smoothing.samples` noisy copies.
pub fn input_gradient_maps(
    model: &ProtoTree,
    chw: &[f32],
    b: usize,
    size: usize,
    rows: &[usize],
    smoothing: &GradientSmoothing,
    device: &Device,
) -> Result<Vec<Vec<Vec<f32>>>> {
    let plane = size * size;
    let copies = smoothing.samples;
    if b == 0 || copies == 0 || chw.len() != b * 3 * plane {
        return Err(Error::Invalid(format!(
            "gradient maps need {b} images of 3×{size}×{size} and at least one sample, got {} values",
            chw.len()
        )));
    }
    let batch = if copies == 1 {
        chw.to_vec()
    } else {
        let mut batch = Vec::with_capacity(b * copies * 3 * plane);
        for (i, image) in chw.chunks_exact(3 * plane).enumerate() {
            let (lo, hi) = image
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, z), v| (a.min(*v), z.max(*v)));
            let sigma = smoothing.sigma * (hi - lo).max(f32::EPSILON);
            let mut rng = ChaCha8Rng::seed_from_u64(
                smoothing.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            for _ in 0..copies {
                batch.extend(image.iter().map(|v| v + sigma * standard_normal(&mut rng)));
            }
        }
        batch
    };
    let input = Var::from_tensor(&Tensor::from_vec(
        batch,
        (b * copies, 3, size, size),
        device,
    )?)?;
    let latent = model.latent(input.as_tensor(), false)?;
    let out = model.forward_latent(&latent)?;
    let mut maps = Vec::with_capacity(rows.len());
    for &row in rows {
        // The images are independent, so the gradient of the batch's sum is each image's.
        let grads = out.routing.narrow(1, row, 1)?.sum_all()?.backward()?;
        let grad = grads
            .get(input.as_tensor())
            .ok_or_else(|| Error::Invalid("no gradient reached the input".into()))?
            .abs()?
            .sum(1)?
            .reshape((b, copies, plane))?
            .mean(1)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        maps.push(grad.chunks_exact(plane).map(<[f32]>::to_vec).collect());
    }
    Ok(maps)
}

/// The `w × h` window of the `size × size` map `map` holding the largest sum (the first
/// in row-major order on ties), as a pixel box `[x0, y0, x1, y1)`. The window is clipped
/// to the map when larger than it.
pub fn best_window(map: &[f32], size: usize, w: usize, h: usize) -> PixelBox {
    let (w, h) = (w.clamp(1, size.max(1)), h.clamp(1, size.max(1)));
    if size == 0 || map.len() != size * size {
        return [0, 0, w as u32, h as u32];
    }
    // Integral image with a zero first row and column, in f64.
    let s = size + 1;
    let mut integral = vec![0f64; s * s];
    for y in 0..size {
        let mut row_sum = 0f64;
        for x in 0..size {
            row_sum += f64::from(map[y * size + x]);
            integral[(y + 1) * s + x + 1] = integral[y * s + x + 1] + row_sum;
        }
    }
    let mut best = (f64::NEG_INFINITY, 0usize, 0usize);
    for y0 in 0..=size - h {
        for x0 in 0..=size - w {
            let (x1, y1) = (x0 + w, y0 + h);
            let sum = integral[y1 * s + x1] - integral[y0 * s + x1] - integral[y1 * s + x0]
                + integral[y0 * s + x0];
            if sum > best.0 {
                best = (sum, x0, y0);
            }
        }
    }
    let (x0, y0) = (best.1 as u32, best.2 as u32);
    [x0, y0, x0 + w as u32, y0 + h as u32]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_finds_the_mass() {
        let size = 8;
        let mut map = vec![0.1f32; size * size];
        // A hot 2×2 blob at x 5..7, y 1..3.
        for (x, y) in [(5, 1), (6, 1), (5, 2), (6, 2)] {
            map[y * size + x] = 5.0;
        }
        assert_eq!(best_window(&map, size, 2, 2), [5, 1, 7, 3]);
        // A 3×3 window covers the blob; the first such window in row-major order wins.
        assert_eq!(best_window(&map, size, 3, 3), [4, 0, 7, 3]);
        // Windows larger than the map are clipped to it.
        assert_eq!(best_window(&map, size, 20, 2), [0, 1, 8, 3]);
        // A flat map: the top-left window.
        assert_eq!(best_window(&[1.0; 16], 4, 2, 2), [0, 0, 2, 2]);
    }

    #[test]
    fn gradient_maps_match_one_image_at_a_time() -> anyhow::Result<()> {
        let tree = prototree_tree::testing::small_cnn_tree(2, 4, 3, 0)?;
        let size = 16;
        let one = |k: usize| -> Vec<f32> {
            (0..3 * size * size)
                .map(|i| (((i + 31 * k) * 7919) % 255) as f32 / 255.0)
                .collect()
        };
        let (a, b) = (one(0), one(1));
        let both: Vec<f32> = a.iter().chain(&b).copied().collect();
        let plain = GradientSmoothing::PLAIN;
        let batch = input_gradient_maps(&tree, &both, 2, size, &[0, 2], &plain, &Device::Cpu)?;
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].len(), 2);
        let alone = input_gradient_maps(&tree, &b, 1, size, &[0, 2], &plain, &Device::Cpu)?;
        for r in 0..2 {
            for (x, y) in batch[r][1].iter().zip(&alone[r][0]) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
        // Some pixel matters, and the two prototypes depend on the pixels differently.
        assert!(batch[0][0].iter().any(|v| *v > 0.0));
        assert_ne!(batch[0][0], batch[1][0]);
        assert!(input_gradient_maps(&tree, &a[1..], 1, size, &[0], &plain, &Device::Cpu).is_err());
        // Smoothed: seeded (the same maps twice), different from the plain gradient, and
        // one image's maps do not depend on the other image's copies being there.
        let smooth = GradientSmoothing {
            samples: 3,
            sigma: 0.15,
            seed: 7,
        };
        let s1 = input_gradient_maps(&tree, &both, 2, size, &[0], &smooth, &Device::Cpu)?;
        let s2 = input_gradient_maps(&tree, &both, 2, size, &[0], &smooth, &Device::Cpu)?;
        assert_eq!(s1, s2);
        assert_ne!(s1[0][0], batch[0][0]);
        let first = input_gradient_maps(&tree, &a, 1, size, &[0], &smooth, &Device::Cpu)?;
        for (x, y) in s1[0][0].iter().zip(&first[0][0]) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
        let none = GradientSmoothing {
            samples: 0,
            ..smooth
        };
        assert!(input_gradient_maps(&tree, &a, 1, size, &[0], &none, &Device::Cpu).is_err());
        Ok(())
    }
}
