//! The test-time transform: optional bounding-box crop, resize to a square (aspect not
//! kept, as the reference's `Resize((s, s))`), scale to [0, 1], normalise, CHW layout.
//!
//! Resizing is Pillow's (what torchvision's `Resize` does to a PIL image): a separable
//! convolution whose filter is widened by the scale factor when shrinking (antialiasing),
//! computed by `fast_image_resize`, whose convolution filters follow Pillow's. Outputs are
//! within one grey level of Pillow's (`tests/pil_resize.rs`, fixtures from
//! `fixtures/resize/make_fixtures.py`).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
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

/// A resampling filter, as Pillow's of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BILINEAR` (torchvision's `Resize` default): a triangle of radius 1.
    Bilinear,
    /// `Image.BICUBIC`: Keys' cubic with a = −0.5 (Catmull–Rom), radius 2.
    Bicubic,
}

/// Resizes `img` to `width × height` as Pillow's `Image.resize` does with `filter`
/// (antialiased when shrinking). An image of that size already is returned unchanged; an
/// empty source or target gives a black image of the target size.
///
/// Like Pillow, the horizontal pass comes first and its result is rounded and clamped to
/// 8 bits before the vertical pass (with the bicubic filter's overshoot, the order shows).
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (w, h) = img.dimensions();
    if (w, h) == (width, height) {
        return img.clone();
    }
    if w == 0 || h == 0 || width == 0 || height == 0 {
        return RgbImage::new(width, height);
    }
    let filter = match filter {
        Filter::Bilinear => FilterType::Bilinear,
        Filter::Bicubic => FilterType::CatmullRom,
    };
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
    let mut resizer = Resizer::new();
    let horizontal = one_pass(&mut resizer, img.as_raw(), (w, h), (width, h), &options);
    let both = horizontal.and_then(|row_pass| {
        one_pass(
            &mut resizer,
            &row_pass,
            (width, h),
            (width, height),
            &options,
        )
    });
    both.and_then(|px| RgbImage::from_raw(width, height, px))
        .unwrap_or_else(|| RgbImage::new(width, height))
}

/// One resize of packed RGB8 pixels from `from` to `to` (which differ in one side only, so
/// it is one separable pass); `None` if the resizer refuses the buffers.
fn one_pass(
    resizer: &mut Resizer,
    pixels: &[u8],
    from: (u32, u32),
    to: (u32, u32),
    options: &ResizeOptions,
) -> Option<Vec<u8>> {
    if from == to {
        return Some(pixels.to_vec());
    }
    let src = ImageRef::new(from.0, from.1, pixels, PixelType::U8x3).ok()?;
    let mut dst = Image::new(to.0, to.1, PixelType::U8x3);
    resizer.resize(&src, &mut dst, options).ok()?;
    Some(dst.into_vec())
}

/// Resizes to `size × size` with Pillow's bilinear filter (the reference's
/// `transforms.Resize((size, size))`).
pub fn resize_square(img: &RgbImage, size: u32) -> RgbImage {
    resize(img, size, size, Filter::Bilinear)
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

    #[test]
    fn resizing_keeps_a_flat_image_flat_and_handles_empty_ones() {
        let flat = RgbImage::from_pixel(13, 7, image::Rgb([10, 200, 77]));
        for filter in [Filter::Bilinear, Filter::Bicubic] {
            for (w, h) in [(5, 3), (40, 31), (13, 7)] {
                let out = resize(&flat, w, h, filter);
                assert_eq!(out.dimensions(), (w, h));
                assert!(
                    out.pixels().all(|p| p.0 == [10, 200, 77]),
                    "{filter:?} {w}x{h}"
                );
            }
        }
        assert_eq!(
            resize(&RgbImage::new(0, 4), 3, 2, Filter::Bilinear),
            RgbImage::new(3, 2)
        );
        assert_eq!(resize(&flat, 0, 2, Filter::Bicubic).dimensions(), (0, 2));
    }
}
