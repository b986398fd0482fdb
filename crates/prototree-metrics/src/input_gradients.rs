//! Input gradients of prototype similarities (the raw material of SmoothGrad,
//! [`crate::smoothgrad`]) and [`best_window`], the window of a map holding the most mass
//! (used for the occlusion box, [`crate::occlusion_box`], and the patch sensitivity,
//! [`crate::patch_sensitivity`]). In eval mode the images do not interact, so one forward
//! pass and one backward pass per step of the longest explanation path give the gradient
//! maps of a whole batch, each image with the prototypes on its own path.

use candle_core::{Device, Tensor, Var};
use prototree_tree::geometry::PixelBox;
use prototree_tree::ProtoTree;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::perturb::standard_normal;
use crate::{Error, Result};

/// The step between the noise seeds of successive images: image `i` of a batch draws
/// from `seed ^ (i + 1)·IMAGE_SEED_STEP`.
pub const IMAGE_SEED_STEP: u64 = 0x9e37_79b9_7f4a_7c15;

/// How the gradient is smoothed: the mean of `|gradient|` over `samples` copies of each
/// image with Gaussian noise of `sigma` times the image's value range (SmoothGrad);
/// `sigma` 0 gives the plain gradient of the image itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientSmoothing {
    /// Copies per image (at least 1).
    pub samples: usize,
    /// Noise as a share of the image's value range (0: none).
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

/// Per image (outer) and each prototype row it asks for (inner, in the order of
/// `rows_per_image[i]`), the input-gradient map (`size × size`, row-major) of that row's
/// similarity on the normalised CHW images `chw` (`b × 3 × size × size`):
/// `|∂ routing probability / ∂ pixel|` summed over channels, averaged over
/// `smoothing.samples` noisy copies.
///
/// The images do not interact (eval mode), so one backward pass serves every image at
/// once with a different row each: pass `j` takes the `j`-th requested row of every image.
/// The cost is one forward pass and as many backward passes as the longest request (an
/// explanation path's length), not one per prototype.
pub fn input_gradient_maps(
    model: &ProtoTree,
    chw: &[f32],
    size: usize,
    rows_per_image: &[Vec<usize>],
    smoothing: &GradientSmoothing,
    device: &Device,
) -> Result<Vec<Vec<Vec<f32>>>> {
    let plane = size * size;
    let b = rows_per_image.len();
    let copies = smoothing.samples;
    if b == 0 || copies == 0 || chw.len() != b * 3 * plane {
        return Err(Error::Invalid(format!(
            "gradient maps need {b} images of 3×{size}×{size} and at least one sample, got {} values",
            chw.len()
        )));
    }
    let batch = if smoothing.sigma == 0.0 {
        chw.chunks_exact(3 * plane)
            .flat_map(|image| std::iter::repeat_n(image, copies).flatten().copied())
            .collect()
    } else {
        let mut batch = Vec::with_capacity(b * copies * 3 * plane);
        for (i, image) in chw.chunks_exact(3 * plane).enumerate() {
            let (lo, hi) = image
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, z), v| (a.min(*v), z.max(*v)));
            let sigma = smoothing.sigma * (hi - lo).max(f32::EPSILON);
            let mut rng = ChaCha8Rng::seed_from_u64(
                smoothing.seed ^ (i as u64 + 1).wrapping_mul(IMAGE_SEED_STEP),
            );
            for _ in 0..copies {
                batch.extend(image.iter().map(|v| v + sigma * standard_normal(&mut rng)));
            }
        }
        batch
    };
    let input = Tensor::from_vec(batch, (b * copies, 3, size, size), device)?;
    let passes = input_gradients(model, &input, copies, rows_per_image)?;
    let mut maps: Vec<Vec<Vec<f32>>> = rows_per_image
        .iter()
        .map(|r| Vec::with_capacity(r.len()))
        .collect();
    for (j, grad) in passes.iter().enumerate() {
        let grad = grad
            .abs()?
            .sum(1)?
            .reshape((b, copies, plane))?
            .mean(1)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for ((rows, map), out) in rows_per_image
            .iter()
            .zip(grad.chunks_exact(plane))
            .zip(maps.iter_mut())
        {
            if j < rows.len() {
                out.push(map.to_vec());
            }
        }
    }
    Ok(maps)
}

/// The input gradients of a batch of `b` images with `copies` variants each (`input`:
/// `(b·copies, 3, size, size)`, image `i`'s variants at `i·copies..`): one tensor of
/// `input`'s shape per pass `j`, holding on image `i`'s variants the gradient of the
/// routing probability of its `j`-th row in `rows_per_image[i]` (zeros for an image that
/// asks for fewer rows). One forward pass, one backward pass per pass.
pub(crate) fn input_gradients(
    model: &ProtoTree,
    input: &Tensor,
    copies: usize,
    rows_per_image: &[Vec<usize>],
) -> Result<Vec<Tensor>> {
    let device = input.device();
    let b = rows_per_image.len();
    if copies == 0 || input.dim(0)? != b * copies {
        return Err(Error::Invalid(format!(
            "gradients: {} inputs for {b} images of {copies} copies",
            input.dim(0)?
        )));
    }
    let num_rows = model.topology().num_branches();
    if let Some(bad) = rows_per_image.iter().flatten().find(|r| **r >= num_rows) {
        return Err(Error::Invalid(format!(
            "gradient maps: prototype row {bad} of a tree with {num_rows}"
        )));
    }
    let input = Var::from_tensor(input)?;
    let latent = model.latent(input.as_tensor(), false)?;
    let routing = model.forward_latent(&latent)?.routing;
    let p = routing.dim(1)?;
    let passes = rows_per_image.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(passes);
    for j in 0..passes {
        // A one-hot selection of each image's j-th row (on every copy of the image).
        let mut select = vec![0f32; b * copies * p];
        for (i, rows) in rows_per_image.iter().enumerate() {
            if let Some(&row) = rows.get(j) {
                for c in 0..copies {
                    select[(i * copies + c) * p + row] = 1.0;
                }
            }
        }
        let select = Tensor::from_vec(select, (b * copies, p), device)?;
        let grads = (&routing * &select)?.sum_all()?.backward()?;
        out.push(
            grads
                .get(input.as_tensor())
                .ok_or_else(|| Error::Invalid("no gradient reached the input".into()))?
                .clone(),
        );
    }
    Ok(out)
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
        let cpu = &Device::Cpu;
        // Image 0 asks for rows 0 and 2, image 1 for row 2 only: two backward passes.
        let batch = input_gradient_maps(&tree, &both, size, &[vec![0, 2], vec![2]], &plain, cpu)?;
        assert_eq!(batch.len(), 2);
        assert_eq!((batch[0].len(), batch[1].len()), (2, 1));
        // Each map is the one of the image alone with that row alone.
        let close = |x: &[f32], y: &[f32]| {
            for (x, y) in x.iter().zip(y) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
            }
        };
        let a0 = input_gradient_maps(&tree, &a, size, &[vec![0]], &plain, cpu)?;
        let a2 = input_gradient_maps(&tree, &a, size, &[vec![2]], &plain, cpu)?;
        let b2 = input_gradient_maps(&tree, &b, size, &[vec![2]], &plain, cpu)?;
        close(&batch[0][0], &a0[0][0]);
        close(&batch[0][1], &a2[0][0]);
        close(&batch[1][0], &b2[0][0]);
        // Some pixel matters, and the two prototypes depend on the pixels differently.
        assert!(batch[0][0].iter().any(|v| *v > 0.0));
        assert_ne!(batch[0][0], batch[0][1]);
        assert!(input_gradient_maps(&tree, &a[1..], size, &[vec![0]], &plain, cpu).is_err());
        assert!(input_gradient_maps(&tree, &a, size, &[vec![99]], &plain, cpu).is_err());
        // Smoothed: seeded (the same maps twice), different from the plain gradient, and
        // one image's maps do not depend on the other image's copies being there.
        let smooth = GradientSmoothing {
            samples: 3,
            sigma: 0.15,
            seed: 7,
        };
        let rows = [vec![0], vec![0]];
        let s1 = input_gradient_maps(&tree, &both, size, &rows, &smooth, cpu)?;
        let s2 = input_gradient_maps(&tree, &both, size, &rows, &smooth, cpu)?;
        assert_eq!(s1, s2);
        assert_ne!(s1[0][0], batch[0][0]);
        let first = input_gradient_maps(&tree, &a, size, &[vec![0]], &smooth, cpu)?;
        close(&s1[0][0], &first[0][0]);
        let none = GradientSmoothing {
            samples: 0,
            ..smooth
        };
        assert!(input_gradient_maps(&tree, &a, size, &[vec![0]], &none, cpu).is_err());
        Ok(())
    }
}
