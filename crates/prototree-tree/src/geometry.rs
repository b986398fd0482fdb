//! Feature-map geometry in image pixels (spec §4.1): the box a latent patch covers and
//! the bicubic upsampling of a feature map to the image, as the reference computes them
//! (OpenCV `INTER_CUBIC`). Used by projection, explanations, rendering and the metrics.
//!
//! A latent patch at `(row, col)` of an `h' × w'` feature map is shown as the reference
//! shows it: the box where its upsampled one-hot mask exceeds 0.02 (about 1.7 cells wide,
//! centred on the cell).

/// A pixel box `[x0, y0, x1, y1)`.
pub type PixelBox = [u32; 4];

/// Threshold on the upsampled one-hot patch mask that bounds the patch's box (the
/// reference's `upsample_threshold`, 0.98, used as `mask > 1 − 0.98`).
pub const BOX_MASK_THRESHOLD: f32 = 0.02;

/// The image region shown for latent patch `(row, col)` of an `fmap_h × fmap_w` map, as
/// the reference finds it: a one-hot map at the patch, upsampled bicubically to the image,
/// and the bounding box of the pixels above [`BOX_MASK_THRESHOLD`] (end exclusive).
pub fn patch_box(
    row: u32,
    col: u32,
    fmap_h: u32,
    fmap_w: u32,
    width: u32,
    height: u32,
) -> PixelBox {
    let (fh, fw) = (fmap_h.max(1) as usize, fmap_w.max(1) as usize);
    let (row, col) = ((row as usize).min(fh - 1), (col as usize).min(fw - 1));
    let mut one_hot = vec![0f32; fh * fw];
    one_hot[row * fw + col] = 1.0;
    let mask = upsample(&one_hot, fh, fw, width, height);
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0u32, 0u32);
    for (i, v) in mask.iter().enumerate() {
        if *v > BOX_MASK_THRESHOLD {
            let (x, y) = ((i % width as usize) as u32, (i / width as usize) as u32);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x + 1);
            y1 = y1.max(y + 1);
        }
    }
    if x0 >= x1 || y0 >= y1 {
        // Images smaller than the map: the cell itself.
        let cell = |i: usize, n: usize, len: u32| {
            (
                i as u32 * len / n as u32,
                ((i as u32 + 1) * len / n as u32).max(i as u32 * len / n as u32 + 1),
            )
        };
        let (a, b) = cell(col, fw, width);
        let (c, d) = cell(row, fh, height);
        return [a, c, b.min(width.max(1)), d.min(height.max(1))];
    }
    [x0, y0, x1, y1]
}

/// Cubic convolution weight (Keys, a = −0.75: OpenCV's `INTER_CUBIC`) at distance `x`.
fn cubic(x: f32) -> f32 {
    const A: f32 = -0.75;
    let x = x.abs();
    if x <= 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// Source taps and weights for each of `out_len` outputs resampled from `in_len` inputs
/// (pixel centres aligned, borders replicated).
fn cubic_taps(in_len: usize, out_len: u32) -> Vec<([usize; 4], [f32; 4])> {
    let last = in_len.saturating_sub(1) as isize;
    (0..out_len)
        .map(|o| {
            let src = (o as f32 + 0.5) * in_len as f32 / out_len as f32 - 0.5;
            let base = src.floor();
            let t = src - base;
            let idx =
                std::array::from_fn(|k| (base as isize - 1 + k as isize).clamp(0, last) as usize);
            let w = std::array::from_fn(|k| cubic(t - (k as f32 - 1.0)));
            (idx, w)
        })
        .collect()
}

/// Bicubic upsampling of an `fh × fw` map to `width × height`, as the reference upsamples
/// similarity maps (OpenCV `INTER_CUBIC`: pixel centres aligned, a = −0.75).
pub fn upsample(map: &[f32], fh: usize, fw: usize, width: u32, height: u32) -> Vec<f32> {
    if fh == 0 || fw == 0 || map.len() != fh * fw {
        return vec![0.0; (width * height) as usize];
    }
    let xs = cubic_taps(fw, width);
    let ys = cubic_taps(fh, height);
    // Rows first (fh × width), then columns.
    let mut rows = Vec::with_capacity(fh * width as usize);
    for r in 0..fh {
        let line = &map[r * fw..(r + 1) * fw];
        rows.extend(
            xs.iter()
                .map(|(i, w)| (0..4).map(|k| line[i[k]] * w[k]).sum::<f32>()),
        );
    }
    let mut out = Vec::with_capacity((width * height) as usize);
    for (i, w) in &ys {
        for x in 0..width as usize {
            out.push((0..4).map(|k| rows[i[k] * width as usize + x] * w[k]).sum());
        }
    }
    out
}
