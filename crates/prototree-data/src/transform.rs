//! The test-time transform: optional bounding-box crop, resize to a square (aspect not
//! kept, as the reference's `Resize((s, s))`), scale to [0, 1], normalise, CHW layout.

use image::{imageops, RgbImage};
use serde::{Deserialize, Serialize};

use crate::cub::BBox;

/// Per-channel normalisation applied after scaling pixels to [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Subtracted per channel.
    pub mean: [f32; 3],
    /// Divided by per channel.
    pub std: [f32; 3],
}

impl Normalization {
    /// torchvision's ImageNet statistics (ResNets and the reference).
    pub const IMAGENET: Normalization = Normalization {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
    /// Mean = std = 0.5 (EfficientNet-Lite).
    pub const HALF: Normalization = Normalization {
        mean: [0.5; 3],
        std: [0.5; 3],
    };
}

/// Crops `img` to `bbox` (clamped to the image; an empty intersection keeps the image).
pub fn crop_to_bbox(img: &RgbImage, bbox: &BBox) -> RgbImage {
    let (w, h) = img.dimensions();
    let x0 = bbox.x.max(0.0).floor() as u32;
    let y0 = bbox.y.max(0.0).floor() as u32;
    let x1 = ((bbox.x + bbox.width).ceil().max(0.0) as u32).min(w);
    let y1 = ((bbox.y + bbox.height).ceil().max(0.0) as u32).min(h);
    if x1 <= x0 || y1 <= y0 {
        return img.clone();
    }
    imageops::crop_imm(img, x0, y0, x1 - x0, y1 - y0).to_image()
}

/// Resizes to `size × size` with a triangle (bilinear) filter.
pub fn resize_square(img: &RgbImage, size: u32) -> RgbImage {
    if img.dimensions() == (size, size) {
        return img.clone();
    }
    imageops::resize(img, size, size, imageops::FilterType::Triangle)
}

/// Writes `img` as normalised CHW floats into `out` (length `3·h·w`).
pub fn to_chw(img: &RgbImage, norm: &Normalization, out: &mut [f32]) {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(p[c]) / 255.0 - norm.mean[c]) / norm.std[c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_a_known_pixel() {
        let img = RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 128]));
        let mut out = [0f32; 3];
        to_chw(&img, &Normalization::HALF, &mut out);
        assert!((out[0] - 1.0).abs() < 1e-6);
        assert!((out[1] + 1.0).abs() < 1e-6);
        assert!((out[2] - (128.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
    }

    #[test]
    fn crop_clamps() {
        let img = RgbImage::new(10, 8);
        let c = crop_to_bbox(
            &img,
            &BBox {
                x: 2.0,
                y: 3.0,
                width: 20.0,
                height: 2.0,
            },
        );
        assert_eq!(c.dimensions(), (8, 2));
    }
}
