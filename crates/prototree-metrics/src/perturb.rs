//! Image perturbations for deletion and perturbation analysis: fill a region with the
//! image's mean colour, blur it, change its colours or add noise, inside a box or
//! everywhere outside it. Images are `f32` RGB in [0, 1]; all randomness is seeded.

use image::RgbImage;
use prototree_data::Normalization;
use prototree_tree::geometry::PixelBox;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Standard deviation (in [0, 1] pixel units) of [`Perturbation::Noise`].
pub const NOISE_SIGMA: f32 = 0.1;

/// An RGB image with `f32` channels in [0, 1], row-major, interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height · width · 3` values.
    pub data: Vec<f32>,
}

impl FloatImage {
    /// From an 8-bit image.
    pub fn from_rgb(img: &RgbImage) -> Self {
        let (w, h) = img.dimensions();
        Self {
            width: w as usize,
            height: h as usize,
            data: img.as_raw().iter().map(|v| f32::from(*v) / 255.0).collect(),
        }
    }

    /// Writes the image as normalised CHW floats into `out` (length `3 · h · w`), as the
    /// model's loader does.
    pub fn write_chw(&self, norm: &Normalization, out: &mut [f32]) {
        let plane = self.width * self.height;
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            for (c, v) in px.iter().enumerate() {
                if let Some(o) = out.get_mut(c * plane + i) {
                    *o = (v - norm.mean[c]) / norm.std[c];
                }
            }
        }
    }

    /// The per-channel mean colour.
    pub fn mean_colour(&self) -> [f32; 3] {
        let n = (self.width * self.height).max(1) as f32;
        let mut m = [0f32; 3];
        for px in self.data.chunks_exact(3) {
            for c in 0..3 {
                m[c] += px[c];
            }
        }
        m.map(|v| v / n)
    }

    /// A separable Gaussian blur with standard deviation `sigma` pixels (borders
    /// replicated; kernel radius 3σ).
    pub fn blurred(&self, sigma: f32) -> FloatImage {
        let radius = (3.0 * sigma).ceil().max(1.0) as isize;
        let kernel: Vec<f32> = (-radius..=radius)
            .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
            .collect();
        let norm: f32 = kernel.iter().sum();
        let (w, h) = (self.width as isize, self.height as isize);
        let pass = |src: &[f32], horizontal: bool| -> Vec<f32> {
            let mut out = vec![0f32; src.len()];
            for y in 0..h {
                for x in 0..w {
                    let mut acc = [0f32; 3];
                    for (k, wk) in kernel.iter().enumerate() {
                        let o = k as isize - radius;
                        let (sx, sy) = if horizontal {
                            ((x + o).clamp(0, w - 1), y)
                        } else {
                            (x, (y + o).clamp(0, h - 1))
                        };
                        let i = ((sy * w + sx) * 3) as usize;
                        for c in 0..3 {
                            acc[c] += wk * src[i + c];
                        }
                    }
                    let i = ((y * w + x) * 3) as usize;
                    for c in 0..3 {
                        out[i + c] = acc[c] / norm;
                    }
                }
            }
            out
        };
        let data = if w == 0 || h == 0 {
            self.data.clone()
        } else {
            pass(&pass(&self.data, true), false)
        };
        FloatImage {
            width: self.width,
            height: self.height,
            data,
        }
    }
}

/// How a region is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Perturbation {
    /// Every pixel becomes the image's mean colour (deletion).
    MeanFill,
    /// Gaussian blur with σ = image width / 32 pixels.
    Blur,
    /// Colour change: the channels are rotated (R, G, B) → (G, B, R), a 120° hue turn
    /// that keeps the structure.
    Colour,
    /// Gaussian noise with σ = [`NOISE_SIGMA`], clamped to [0, 1].
    Noise,
}

impl Perturbation {
    /// The perturbations of the perturbation analysis (not deletion).
    pub const ANALYSIS: [Perturbation; 3] = [
        Perturbation::Blur,
        Perturbation::Colour,
        Perturbation::Noise,
    ];

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Perturbation::MeanFill => "mean fill",
            Perturbation::Blur => "blur",
            Perturbation::Colour => "colour",
            Perturbation::Noise => "noise",
        }
    }
}

/// Where a perturbation applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    /// Inside the box.
    Inside,
    /// Everywhere but the box.
    Outside,
}

fn in_box(b: PixelBox, x: usize, y: usize) -> bool {
    (x as u32) >= b[0] && (x as u32) < b[2] && (y as u32) >= b[1] && (y as u32) < b[3]
}

/// One standard normal sample (Box–Muller).
pub fn standard_normal(rng: &mut impl Rng) -> f32 {
    let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
    let u2: f32 = rng.random::<f32>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// `img` with perturbation `p` applied to the pixels of `area` relative to box `b`;
/// `seed` drives the noise.
pub fn perturb(
    img: &FloatImage,
    p: Perturbation,
    b: PixelBox,
    area: Area,
    seed: u64,
) -> FloatImage {
    let changed: FloatImage = match p {
        Perturbation::MeanFill => {
            let m = img.mean_colour();
            FloatImage {
                width: img.width,
                height: img.height,
                data: (0..img.width * img.height).flat_map(|_| m).collect(),
            }
        }
        Perturbation::Blur => img.blurred((img.width as f32 / 32.0).max(1.0)),
        Perturbation::Colour => FloatImage {
            width: img.width,
            height: img.height,
            data: img
                .data
                .chunks_exact(3)
                .flat_map(|px| [px[1], px[2], px[0]])
                .collect(),
        },
        Perturbation::Noise => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            FloatImage {
                width: img.width,
                height: img.height,
                data: img
                    .data
                    .iter()
                    .map(|v| (v + NOISE_SIGMA * standard_normal(&mut rng)).clamp(0.0, 1.0))
                    .collect(),
            }
        }
    };
    let mut out = img.clone();
    for y in 0..img.height {
        for x in 0..img.width {
            let inside = in_box(b, x, y);
            if inside == (area == Area::Inside) {
                let i = (y * img.width + x) * 3;
                out.data[i..i + 3].copy_from_slice(&changed.data[i..i + 3]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> FloatImage {
        FloatImage {
            width: 8,
            height: 8,
            data: (0..192).map(|i| (i % 7) as f32 / 7.0).collect(),
        }
    }

    #[test]
    fn perturbations_stay_in_their_area() {
        let img = ramp();
        let b = [2, 2, 5, 5];
        for p in [
            Perturbation::MeanFill,
            Perturbation::Blur,
            Perturbation::Colour,
            Perturbation::Noise,
        ] {
            let inside = perturb(&img, p, b, Area::Inside, 7);
            let outside = perturb(&img, p, b, Area::Outside, 7);
            for y in 0..8 {
                for x in 0..8 {
                    let i = (y * 8 + x) * 3;
                    let same_in = inside.data[i..i + 3] == img.data[i..i + 3];
                    let same_out = outside.data[i..i + 3] == img.data[i..i + 3];
                    if in_box(b, x, y) {
                        assert!(same_out, "{p:?} changed ({x},{y}) outside its area");
                    } else {
                        assert!(same_in, "{p:?} changed ({x},{y}) inside its area");
                    }
                }
            }
            assert_ne!(inside, img, "{p:?} changed nothing");
            assert!(inside.data.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        // Seeded noise is reproducible.
        assert_eq!(
            perturb(&img, Perturbation::Noise, b, Area::Inside, 1),
            perturb(&img, Perturbation::Noise, b, Area::Inside, 1)
        );
        // Mean fill uses the image mean.
        let m = img.mean_colour();
        let f = perturb(&img, Perturbation::MeanFill, b, Area::Inside, 0);
        assert_eq!(&f.data[(3 * 8 + 3) * 3..(3 * 8 + 3) * 3 + 3], &m);
    }

    #[test]
    fn blur_keeps_constants_and_chw_normalises() {
        let flat = FloatImage {
            width: 5,
            height: 4,
            data: vec![0.25; 60],
        };
        assert!(flat
            .blurred(1.5)
            .data
            .iter()
            .all(|v| (v - 0.25).abs() < 1e-6));
        let mut out = vec![0f32; 60];
        flat.write_chw(&Normalization::HALF, &mut out);
        assert!(out.iter().all(|v| (v + 0.5).abs() < 1e-6));
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let xs: Vec<f32> = (0..4000).map(|_| standard_normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f32>() / 4000.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 4000.0;
        assert!(mean.abs() < 0.06 && (var - 1.0).abs() < 0.1, "{mean} {var}");
    }
}
