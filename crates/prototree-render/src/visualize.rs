//! Images for explanations: crops, boxes, similarity heatmaps (spec §4.1); the geometry
//! (patch boxes, upsampling) is the model's ([`prototree_tree::geometry`]). Heatmaps are the similarity map
//! `exp(−distance)` upsampled bicubically to the image, min-max normalised and coloured with
//! a jet colour map, blended over the image (0.55 image + 0.45 colour; the reference
//! uses 0.5 + 0.2, which darkens the picture).

use image::{imageops, Rgb, RgbImage};
pub use prototree_tree::geometry::{patch_box, upsample, PixelBox};

/// Crops `img` to `b`.
pub fn crop(img: &RgbImage, b: PixelBox) -> RgbImage {
    let (w, h) = img.dimensions();
    let x0 = b[0].min(w.saturating_sub(1));
    let y0 = b[1].min(h.saturating_sub(1));
    imageops::crop_imm(img, x0, y0, b[2].min(w) - x0, b[3].min(h) - y0).to_image()
}

/// Colour of a patch box (cyan, as the reference's).
pub const PATCH_BOX_COLOUR: [u8; 3] = [0, 255, 255];
/// Colour of an occlusion box (orange).
pub const GRADIENT_BOX_COLOUR: [u8; 3] = [255, 140, 0];

/// A copy of `img` with a 1-pixel rectangle around `b` (cyan, as the reference's box).
pub fn draw_box(img: &RgbImage, b: PixelBox) -> RgbImage {
    let mut out = img.clone();
    outline(&mut out, b, PATCH_BOX_COLOUR);
    out
}

/// Draws a 1-pixel rectangle around `b` in `colour` into `out` (clipped to the image).
pub fn outline(out: &mut RgbImage, b: PixelBox, colour: [u8; 3]) {
    let (w, h) = out.dimensions();
    if w == 0 || h == 0 {
        return;
    }
    let colour = Rgb(colour);
    let (x1, y1) = (b[2].min(w).saturating_sub(1), b[3].min(h).saturating_sub(1));
    for x in b[0]..=x1 {
        for y in [b[1].min(h - 1), y1] {
            out.put_pixel(x.min(w - 1), y, colour);
        }
    }
    for y in b[1]..=y1 {
        for x in [b[0].min(w - 1), x1] {
            out.put_pixel(x, y.min(h - 1), colour);
        }
    }
}

/// Nearest-neighbour upscaling by an integer factor, for small images.
pub fn upscale(img: &RgbImage, factor: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    imageops::resize(
        img,
        w * factor.max(1),
        h * factor.max(1),
        imageops::FilterType::Nearest,
    )
}

fn jet(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    let r = (1.5 - (4.0 * t - 3.0).abs()).clamp(0.0, 1.0);
    let g = (1.5 - (4.0 * t - 2.0).abs()).clamp(0.0, 1.0);
    let b = (1.5 - (4.0 * t - 1.0).abs()).clamp(0.0, 1.0);
    [r, g, b]
}

/// The similarity map `sim` (`fh × fw`) as a jet heatmap blended over `img`.
pub fn heatmap_overlay(img: &RgbImage, sim: &[f32], fh: usize, fw: usize) -> RgbImage {
    let (w, h) = img.dimensions();
    if fh == 0 || fw == 0 || sim.len() != fh * fw {
        return img.clone();
    }
    let up = upsample(sim, fh, fw, w, h);
    let (lo, hi) = up
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let span = (hi - lo).max(1e-12);
    RgbImage::from_fn(w, h, |x, y| {
        let t = (up[(y * w + x) as usize] - lo) / span;
        let c = jet(t);
        let p = img.get_pixel(x, y);
        Rgb(std::array::from_fn(|i| {
            (0.55 * f32::from(p[i]) + 0.45 * 255.0 * c[i])
                .round()
                .clamp(0.0, 255.0) as u8
        }))
    })
}

/// PNG bytes of an image.
pub fn png_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    // Encoding a valid in-memory buffer does not fail.
    let _ = img.write_to(&mut out, image::ImageFormat::Png);
    out.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_and_upsampling() {
        // 8×8 map on a 64-px image: cell 8 px; patch (0, 0) → [0, 0, 12, 12).
        assert_eq!(patch_box(0, 0, 8, 8, 64, 64), [0, 0, 12, 12]);
        assert_eq!(patch_box(7, 7, 8, 8, 64, 64), [52, 52, 64, 64]);
        // Boxes from OpenCV: bbox of cv2.resize(one_hot, INTER_CUBIC) > 0.02.
        assert_eq!(patch_box(1, 1, 2, 2, 64, 64), [17, 17, 64, 64]);
        assert_eq!(patch_box(3, 2, 7, 7, 224, 224), [49, 81, 111, 143]);
        assert_eq!(patch_box(1, 4, 5, 6, 90, 70), [53, 7, 82, 35]);
        // Upsampling a constant map keeps it (the cubic weights sum to one) ...
        let flat = upsample(&[2.0; 6], 2, 3, 7, 5);
        assert!(flat.iter().all(|v| (v - 2.0).abs() < 1e-5));
        // ... a linear ramp stays a ramp inside the map: cell centres of a 2×2 map on
        // 4×4 pixels lie at 1 and 3, where the input values are reproduced.
        let up = upsample(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4, 4);
        assert_eq!(up.len(), 16);
        assert!(up[0] < up[5] && up[5] < up[10] && up[10] < up[15]);
        // Values from OpenCV 4 `cv2.resize(m, (4, 4), interpolation=cv2.INTER_CUBIC)`.
        let opencv = [
            -0.316_406_25,
            0.015_625,
            0.5625,
            0.894_531_25,
            0.347_656_25,
            0.679_687_5,
            1.226_562_5,
            1.558_593_8,
            1.441_406_2,
            1.773_437_5,
            2.320_312_5,
            2.652_343_8,
            2.105_468_8,
            2.4375,
            2.984_375,
            3.316_406_2,
        ];
        for (a, b) in up.iter().zip(opencv) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // A 2×3 map to 7×5 (non-square, non-integer factor), first row from OpenCV.
        let ramp: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let up = upsample(&ramp, 2, 3, 7, 5);
        let opencv_row0 = [
            -0.440_08, -0.222_878, 0.144_469, 0.669_25, 1.194_031, 1.561_378, 1.778_58,
        ];
        for (a, b) in up.iter().zip(opencv_row0) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        let img = RgbImage::new(16, 16);
        let over = heatmap_overlay(&img, &[0.0, 1.0, 0.0, 0.0], 2, 2);
        // The hot corner is red-ish, the cold ones blue-ish.
        assert!(over.get_pixel(15, 0)[0] > over.get_pixel(0, 15)[0]);
        let boxed = draw_box(&img, [2, 2, 6, 6]);
        assert_eq!(boxed.get_pixel(2, 2), &Rgb([0, 255, 255]));
        assert_eq!(crop(&img, [2, 2, 6, 6]).dimensions(), (4, 4));
    }
}
