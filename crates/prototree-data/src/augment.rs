//! Training-time augmentation.
//!
//! `Reference` reproduces the reference's CUB recipe (spec §2.4), applied in random order
//! after the resize: RandomPerspective(0.2, p = 0.5), ColorJitter(brightness, contrast,
//! saturation ∈ (0.6, 1.4), hue ∈ (−0.02, 0.02)), RandomHorizontalFlip, RandomAffine(10°,
//! shear ±2°, translate ±5%). Geometric steps are inverse-mapped bilinear warps; pixels
//! from outside the image are black, as in torchvision.

use image::{Rgb, RgbImage};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::color::{hsv_to_rgb, rgb_to_hsv};

/// Which augmentation to apply to training images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Augmentation {
    /// No augmentation.
    None,
    /// Horizontal flip and a small random translation (cheap; the synthetic demo).
    Flip,
    /// A small random translation only (up to 1/16 of the side): for data whose mirror
    /// image is another class or no class (digits, text).
    Shift,
    /// The reference's CUB recipe.
    #[default]
    Reference,
}

impl std::str::FromStr for Augmentation {
    type Err = crate::Error;
    /// The kebab-case name (`none`, `flip`, `shift`, `reference`), as in run.toml.
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "none" => Ok(Augmentation::None),
            "flip" => Ok(Augmentation::Flip),
            "shift" => Ok(Augmentation::Shift),
            "reference" => Ok(Augmentation::Reference),
            other => Err(crate::Error::Config(format!(
                "unknown augmentation `{other}` (expected none, flip, shift or reference)"
            ))),
        }
    }
}

/// A 3×3 homography mapping output pixel coordinates to input coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homography(pub [f64; 9]);

impl Homography {
    /// The identity.
    pub const IDENTITY: Homography = Homography([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);

    fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let m = &self.0;
        let w = m[6] * x + m[7] * y + m[8];
        (
            (m[0] * x + m[1] * y + m[2]) / w,
            (m[3] * x + m[4] * y + m[5]) / w,
        )
    }

    /// The homography taking the four `src` points to the four `dst` points, if any.
    pub fn from_points(src: [(f64, f64); 4], dst: [(f64, f64); 4]) -> Option<Homography> {
        // Solve the 8×8 linear system for h (h33 = 1) by Gaussian elimination.
        let mut a = [[0f64; 9]; 8];
        for i in 0..4 {
            let (x, y) = src[i];
            let (u, v) = dst[i];
            a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
            a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
        }
        for col in 0..8 {
            let pivot = (col..8).max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))?;
            if a[pivot][col].abs() < 1e-12 {
                return None;
            }
            a.swap(col, pivot);
            for r in 0..8 {
                if r != col {
                    let f = a[r][col] / a[col][col];
                    let pivot_row = a[col];
                    for (x, p) in a[r].iter_mut().zip(pivot_row).skip(col) {
                        *x -= f * p;
                    }
                }
            }
        }
        let mut h = [0f64; 9];
        for i in 0..8 {
            h[i] = a[i][8] / a[i][i];
        }
        h[8] = 1.0;
        Some(Homography(h))
    }
}

/// Warps `img` so that output pixel `(x, y)` samples input `h(x, y)` bilinearly; outside → black.
pub fn warp(img: &RgbImage, h: &Homography) -> RgbImage {
    let (w, hgt) = img.dimensions();
    let mut out = RgbImage::new(w, hgt);
    for (x, y, p) in out.enumerate_pixels_mut() {
        let (sx, sy) = h.apply(f64::from(x) + 0.5, f64::from(y) + 0.5);
        *p = sample_bilinear(img, sx - 0.5, sy - 0.5);
    }
    out
}

fn sample_bilinear(img: &RgbImage, x: f64, y: f64) -> Rgb<u8> {
    let (w, h) = img.dimensions();
    if !(x > -1.0 && y > -1.0 && x < f64::from(w) && y < f64::from(h)) {
        return Rgb([0, 0, 0]);
    }
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let get = |xi: f64, yi: f64| -> [f64; 3] {
        if xi < 0.0 || yi < 0.0 || xi >= f64::from(w) || yi >= f64::from(h) {
            [0.0; 3]
        } else {
            let p = img.get_pixel(xi as u32, yi as u32);
            [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])]
        }
    };
    let (a, b, c, d) = (
        get(x0, y0),
        get(x0 + 1.0, y0),
        get(x0, y0 + 1.0),
        get(x0 + 1.0, y0 + 1.0),
    );
    let mut out = [0u8; 3];
    for i in 0..3 {
        let v = a[i] * (1.0 - fx) * (1.0 - fy)
            + b[i] * fx * (1.0 - fy)
            + c[i] * (1.0 - fx) * fy
            + d[i] * fx * fy;
        out[i] = v.round().clamp(0.0, 255.0) as u8;
    }
    Rgb(out)
}

/// Mirrors the image left-right.
pub fn flip_horizontal(img: &RgbImage) -> RgbImage {
    image::imageops::flip_horizontal(img)
}

/// The inverse map of a rotation by `deg` degrees, shear `(sx, sy)` degrees and a
/// translation `(tx, ty)` pixels about the image centre (torchvision's RandomAffine).
pub fn affine(
    width: u32,
    height: u32,
    deg: f64,
    shear: (f64, f64),
    translate: (f64, f64),
) -> Homography {
    let (cx, cy) = (f64::from(width) / 2.0, f64::from(height) / 2.0);
    let (a, sx, sy) = (deg.to_radians(), shear.0.to_radians(), shear.1.to_radians());
    // Forward: M = T(c + t) · R(a) · Sh(sx, sy) · T(−c); we need M⁻¹ for inverse mapping.
    let (ca, sa) = (a.cos(), a.sin());
    let (m00, m01, m10, m11) = (ca, -sa, sa, ca);
    let (s00, s01, s10, s11) = (1.0, sx.tan(), sy.tan(), 1.0);
    let f00 = m00 * s00 + m01 * s10;
    let f01 = m00 * s01 + m01 * s11;
    let f10 = m10 * s00 + m11 * s10;
    let f11 = m10 * s01 + m11 * s11;
    let det = f00 * f11 - f01 * f10;
    let (i00, i01, i10, i11) = (f11 / det, -f01 / det, -f10 / det, f00 / det);
    // x_in = F⁻¹ (x_out − c − t) + c
    let (ox, oy) = (cx + translate.0, cy + translate.1);
    Homography([
        i00,
        i01,
        cx - i00 * ox - i01 * oy,
        i10,
        i11,
        cy - i10 * ox - i11 * oy,
        0.0,
        0.0,
        1.0,
    ])
}

/// torchvision's RandomPerspective: corners moved inwards by up to `distortion · side / 2`.
pub fn random_perspective(
    rng: &mut impl Rng,
    width: u32,
    height: u32,
    distortion: f64,
) -> Homography {
    let (w, h) = (f64::from(width), f64::from(height));
    let (dw, dh) = (distortion * w / 2.0, distortion * h / 2.0);
    let mut r = |m: f64| rng.random::<f64>() * m;
    let src = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)];
    let dst = [
        (r(dw), r(dh)),
        (w - r(dw), r(dh)),
        (w - r(dw), h - r(dh)),
        (r(dw), h - r(dh)),
    ];
    // Inverse map: output (dst) → input (src).
    Homography::from_points(dst, src).unwrap_or(Homography::IDENTITY)
}

/// torchvision's ColorJitter with factors drawn from the given ranges, in random order.
pub fn color_jitter(img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
    let mut ops = [0u8, 1, 2, 3];
    ops.shuffle(rng);
    let brightness = rng.random_range(0.6..1.4f32);
    let contrast = rng.random_range(0.6..1.4f32);
    let saturation = rng.random_range(0.6..1.4f32);
    let hue = rng.random_range(-0.02..0.02f32);
    let mut px: Vec<[f32; 3]> = img
        .pixels()
        .map(|p| {
            [
                f32::from(p[0]) / 255.0,
                f32::from(p[1]) / 255.0,
                f32::from(p[2]) / 255.0,
            ]
        })
        .collect();
    let gray = |p: &[f32; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    for op in ops {
        match op {
            0 => px.iter_mut().for_each(|p| {
                p.iter_mut()
                    .for_each(|v| *v = (*v * brightness).clamp(0.0, 1.0))
            }),
            1 => {
                let mean = px.iter().map(gray).sum::<f32>() / px.len().max(1) as f32;
                px.iter_mut().for_each(|p| {
                    p.iter_mut().for_each(|v| {
                        *v = (contrast * *v + (1.0 - contrast) * mean).clamp(0.0, 1.0)
                    })
                });
            }
            2 => px.iter_mut().for_each(|p| {
                let g = gray(p);
                p.iter_mut()
                    .for_each(|v| *v = (saturation * *v + (1.0 - saturation) * g).clamp(0.0, 1.0));
            }),
            _ => px.iter_mut().for_each(|p| {
                let mut hsv = rgb_to_hsv(*p);
                hsv[0] += hue;
                *p = hsv_to_rgb(hsv);
            }),
        }
    }
    let (w, h) = img.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let p = px[(y * w + x) as usize];
        Rgb([
            (p[0] * 255.0).round().clamp(0.0, 255.0) as u8,
            (p[1] * 255.0).round().clamp(0.0, 255.0) as u8,
            (p[2] * 255.0).round().clamp(0.0, 255.0) as u8,
        ])
    })
}

/// `img` moved by up to 1/16 of its larger side in each direction (edges repeated as
/// the warp does).
fn random_shift(img: &RgbImage, rng: &mut impl Rng) -> RgbImage {
    let (w, h) = img.dimensions();
    let max_shift = f64::from(w.max(h)) / 16.0;
    let t = (
        rng.random_range(-max_shift..=max_shift),
        rng.random_range(-max_shift..=max_shift),
    );
    warp(img, &affine(w, h, 0.0, (0.0, 0.0), t))
}

/// Applies `aug` to `img` with randomness from `rng`.
pub fn augment(img: &RgbImage, aug: Augmentation, rng: &mut impl Rng) -> RgbImage {
    let (w, h) = img.dimensions();
    match aug {
        Augmentation::None => img.clone(),
        Augmentation::Flip => {
            let base = if rng.random::<bool>() {
                flip_horizontal(img)
            } else {
                img.clone()
            };
            random_shift(&base, rng)
        }
        Augmentation::Shift => random_shift(img, rng),
        Augmentation::Reference => {
            let mut steps = [0u8, 1, 2, 3];
            steps.shuffle(rng);
            let mut out = img.clone();
            for step in steps {
                out = match step {
                    0 if rng.random::<f64>() < 0.5 => {
                        warp(&out, &random_perspective(rng, w, h, 0.2))
                    }
                    0 => out,
                    1 => color_jitter(&out, rng),
                    2 if rng.random::<bool>() => flip_horizontal(&out),
                    2 => out,
                    _ => {
                        let deg = rng.random_range(-10.0..10.0);
                        let shear = (rng.random_range(-2.0..2.0), 0.0);
                        let t = (
                            (rng.random_range(-0.05..0.05) * f64::from(w)).round(),
                            (rng.random_range(-0.05..0.05) * f64::from(h)).round(),
                        );
                        warp(&out, &affine(w, h, deg, shear, t))
                    }
                };
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_run_toml_writes_them() {
        for a in [
            Augmentation::None,
            Augmentation::Flip,
            Augmentation::Shift,
            Augmentation::Reference,
        ] {
            let name = serde_json::to_string(&a).unwrap_or_default();
            assert_eq!(name.trim_matches('"').parse::<Augmentation>().ok(), Some(a));
        }
        let err = "flips".parse::<Augmentation>().err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("unknown augmentation `flips`")));
    }
    use rand::SeedableRng;

    fn pattern() -> RgbImage {
        RgbImage::from_fn(8, 6, |x, y| Rgb([(x * 30) as u8, (y * 40) as u8, 7]))
    }

    #[test]
    fn identity_warps_are_identity() {
        let img = pattern();
        assert_eq!(warp(&img, &Homography::IDENTITY), img);
        assert_eq!(warp(&img, &affine(8, 6, 0.0, (0.0, 0.0), (0.0, 0.0))), img);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert_eq!(warp(&img, &random_perspective(&mut rng, 8, 6, 0.0)), img);
    }

    #[test]
    fn flip_and_translate() {
        let img = pattern();
        let f = flip_horizontal(&img);
        assert_eq!(f.get_pixel(0, 0), img.get_pixel(7, 0));
        let shifted = warp(&img, &affine(8, 6, 0.0, (0.0, 0.0), (1.0, 0.0)));
        assert_eq!(shifted.get_pixel(1, 2), img.get_pixel(0, 2));
        assert_eq!(shifted.get_pixel(0, 2), &Rgb([0, 0, 0]));
    }

    #[test]
    fn reference_augmentation_keeps_size() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let out = augment(&pattern(), Augmentation::Reference, &mut rng);
        assert_eq!(out.dimensions(), (8, 6));
    }
}
