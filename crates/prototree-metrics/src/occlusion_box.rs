//! The occlusion box: the window of a prototype's patch-box size whose occlusion (filled
//! with the image's mean colour) lowers the prototype's similarity the most. It is where
//! the match's evidence lies in the image, by the test the literature uses to check a
//! region (occlusion sensitivity, Zeiler & Fergus 2014; the perturbation analysis of
//! CaBRNet).
//!
//! The patch box of the reference (`prototree_tree::geometry::patch_box`) is where the
//! nearest latent cell sits; the cell sees far more than its box (38 px for the small CNN
//! at stride 8), so a cell beside the wing can match a wing prototype while its box shows
//! background. The occlusion box keeps the box's size and moves it to the pixels the match
//! depends on. Two ways to find it, both from forward passes only:
//! - [`best_occluded_window`] searches the windows themselves, coarse to fine (one image
//!   and prototype: a projected prototype's source);
//! - [`occlusion_maps`] occludes each image with one square of the patch's size at steps
//!   of half that size and gives every pixel the mean drop of the squares covering it; the
//!   box is then the best window of that map ([`crate::input_gradients::best_window`]). One
//!   batch of occluded copies serves every prototype on an image's path (test images).
//!
//! The similarity is the routing probability `exp(−‖z − p‖)` at the nearest patch; a drop
//! is `max(0, before − after)`.

use candle_core::{Device, Tensor};
use prototree_tree::geometry::PixelBox;
use prototree_tree::{ProjectionRecord, ProtoTree};

use crate::{Error, Result};

/// The square occluder of [`occlusion_maps`]: its side and its step, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occluder {
    /// Side of the square (clipped to the image).
    pub side: usize,
    /// Step between successive squares (at least 1).
    pub stride: usize,
}

impl Occluder {
    /// The occluder for the patch boxes `boxes` (`[x0, y0, x1, y1)`): a square of their
    /// largest side, stepped by half of it (7 × 7 squares for the small CNN's 16-px boxes
    /// on 64 px); a 1-px square for no boxes.
    pub fn covering(boxes: impl IntoIterator<Item = PixelBox>) -> Occluder {
        let side = boxes
            .into_iter()
            .map(|b| b[2].saturating_sub(b[0]).max(b[3].saturating_sub(b[1])) as usize)
            .fold(1, usize::max);
        Occluder {
            side,
            stride: (side / 2).max(1),
        }
    }
}

/// Window offsets along an axis of `size` pixels for windows of `win`: `0, stride, …`, the
/// last flush with the edge (a window larger than the axis: just 0).
fn offsets(size: usize, win: usize, stride: usize) -> Vec<usize> {
    let last = size.saturating_sub(win);
    let mut out: Vec<usize> = (0..=last).step_by(stride.max(1)).collect();
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
}

/// `image` (normalised CHW, `3 × size × size`) with the box `[x0, y0, x1, y1)` of each
/// channel set to the channel's mean, appended to `out`.
fn push_occluded(out: &mut Vec<f32>, image: &[f32], means: &[f32; 3], size: usize, b: PixelBox) {
    let start = out.len();
    out.extend_from_slice(image);
    let plane = size * size;
    let [x0, y0, x1, y1] = b.map(|v| v as usize);
    for (c, mean) in means.iter().enumerate() {
        for y in y0..y1.min(size) {
            let row = start + c * plane + y * size;
            out[row + x0..row + x1.min(size)].fill(*mean);
        }
    }
}

fn channel_means(image: &[f32], plane: usize) -> [f32; 3] {
    let mut m = [0f32; 3];
    for (c, v) in m.iter_mut().enumerate() {
        *v = image[c * plane..(c + 1) * plane].iter().sum::<f32>() / plane.max(1) as f32;
    }
    m
}

/// The similarities (routing probabilities, `n × rows`) of the `n` normalised CHW images in
/// `batch`, in forward passes of at most `batch_size` images.
fn similarities(
    model: &ProtoTree,
    batch: &[f32],
    size: usize,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let per = 3 * size * size;
    let mut out = Vec::with_capacity(batch.len() / per.max(1));
    for chunk in batch.chunks(per * batch_size.max(1)) {
        let n = chunk.len() / per;
        let input = Tensor::from_slice(chunk, (n, 3, size, size), device)?;
        out.extend(model.forward(&input, false)?.routing.to_vec2::<f32>()?);
    }
    Ok(out)
}

fn check_images(chw: &[f32], size: usize, images: usize) -> Result<()> {
    if size == 0 || images == 0 || chw.len() != images * 3 * size * size {
        return Err(Error::Invalid(format!(
            "occlusion needs {images} images of 3×{size}×{size}, got {} values",
            chw.len()
        )));
    }
    Ok(())
}

fn check_rows(model: &ProtoTree, rows: impl IntoIterator<Item = usize>) -> Result<()> {
    let num_rows = model.topology().num_branches();
    match rows.into_iter().find(|r| *r >= num_rows) {
        Some(bad) => Err(Error::Invalid(format!(
            "occlusion: prototype row {bad} of a tree with {num_rows}"
        ))),
        None => Ok(()),
    }
}

/// Per image (outer) and each prototype row it asks for (inner, in the order of
/// `rows_per_image[i]`), the occlusion map (`size × size`, row-major) of that row on the
/// normalised CHW images `chw` (`b × 3 × size × size`): image `i` is occluded by
/// `occluders[i]` at every step, and each pixel holds the mean drop of the row's
/// similarity over the squares that cover it. Cost: one forward pass per square and image
/// (49 for a 16-px occluder on 64 px), whatever the number of rows.
pub fn occlusion_maps(
    model: &ProtoTree,
    chw: &[f32],
    size: usize,
    rows_per_image: &[Vec<usize>],
    occluders: &[Occluder],
    batch_size: usize,
    device: &Device,
) -> Result<Vec<Vec<Vec<f32>>>> {
    let b = rows_per_image.len();
    check_images(chw, size, b)?;
    if occluders.len() != b {
        return Err(Error::Invalid(format!(
            "occlusion maps: {} occluders for {b} images",
            occluders.len()
        )));
    }
    check_rows(model, rows_per_image.iter().flatten().copied())?;
    let plane = size * size;
    let mut out = Vec::with_capacity(b);
    for ((image, rows), occ) in chw
        .chunks_exact(3 * plane)
        .zip(rows_per_image)
        .zip(occluders)
    {
        if rows.is_empty() {
            out.push(Vec::new());
            continue;
        }
        let side = occ.side.clamp(1, size);
        let steps = offsets(size, side, occ.stride);
        let squares: Vec<PixelBox> = steps
            .iter()
            .flat_map(|&y| steps.iter().map(move |&x| (x, y)))
            .map(|(x, y)| [x, y, x + side, y + side].map(|v| v as u32))
            .collect();
        let means = channel_means(image, plane);
        let mut batch = Vec::with_capacity((squares.len() + 1) * 3 * plane);
        batch.extend_from_slice(image);
        for &sq in &squares {
            push_occluded(&mut batch, image, &means, size, sq);
        }
        let sims = similarities(model, &batch, size, batch_size, device)?;
        // How many squares cover each pixel (the same for every row).
        let mut cover = vec![0f32; plane];
        for sq in &squares {
            for y in sq[1] as usize..sq[3] as usize {
                cover[y * size + sq[0] as usize..y * size + sq[2] as usize]
                    .iter_mut()
                    .for_each(|c| *c += 1.0);
            }
        }
        let mut maps = Vec::with_capacity(rows.len());
        for &row in rows {
            let before = sims[0][row];
            let mut map = vec![0f32; plane];
            for (sq, after) in squares.iter().zip(&sims[1..]) {
                let drop = (before - after[row]).max(0.0);
                for y in sq[1] as usize..sq[3] as usize {
                    map[y * size + sq[0] as usize..y * size + sq[2] as usize]
                        .iter_mut()
                        .for_each(|m| *m += drop);
                }
            }
            for (m, c) in map.iter_mut().zip(&cover) {
                if *c > 0.0 {
                    *m /= c;
                }
            }
            maps.push(map);
        }
        out.push(maps);
    }
    Ok(out)
}

/// The occlusion box of prototype row `row` on one normalised CHW image (`3 × size ×
/// size`): the `w × h` window whose mean fill lowers the row's similarity the most, and
/// that drop. The search steps the window by half its larger side, then by an eighth of
/// it (at least 1 px) within one coarse step around the best window; the first window in
/// row-major order wins ties. Cost: about 130 forward passes for a 16-px window on 64 px.
#[allow(clippy::too_many_arguments)]
pub fn best_occluded_window(
    model: &ProtoTree,
    chw: &[f32],
    size: usize,
    row: usize,
    w: usize,
    h: usize,
    batch_size: usize,
    device: &Device,
) -> Result<(PixelBox, f32)> {
    check_images(chw, size, 1)?;
    check_rows(model, [row])?;
    let (w, h) = (w.clamp(1, size), h.clamp(1, size));
    let plane = size * size;
    let means = channel_means(chw, plane);
    let coarse = (w.max(h) / 2).max(1);
    let fine = (w.max(h) / 8).max(1);
    let evaluate = |candidates: &[(usize, usize)]| -> Result<(f32, (usize, usize))> {
        let mut batch = Vec::with_capacity((candidates.len() + 1) * 3 * plane);
        batch.extend_from_slice(chw);
        for &(x, y) in candidates {
            let b = [x, y, x + w, y + h].map(|v| v as u32);
            push_occluded(&mut batch, chw, &means, size, b);
        }
        let sims = similarities(model, &batch, size, batch_size, device)?;
        let before = sims[0][row];
        let mut best = (f32::NEG_INFINITY, (0, 0));
        for (&c, after) in candidates.iter().zip(&sims[1..]) {
            let drop = before - after[row];
            if drop > best.0 {
                best = (drop, c);
            }
        }
        Ok(best)
    };
    let grid = |xs: Vec<usize>, ys: Vec<usize>| -> Vec<(usize, usize)> {
        ys.iter()
            .flat_map(|&y| xs.iter().map(move |&x| (x, y)))
            .collect()
    };
    let (_, (cx, cy)) = evaluate(&grid(offsets(size, w, coarse), offsets(size, h, coarse)))?;
    let around = |c: usize, win: usize| -> Vec<usize> {
        let last = size - win;
        let lo = c.saturating_sub(coarse);
        let hi = (c + coarse).min(last);
        let mut v: Vec<usize> = (lo..=hi).step_by(fine).collect();
        if v.last() != Some(&hi) {
            v.push(hi);
        }
        v
    };
    let (drop, (x, y)) = evaluate(&grid(around(cx, w), around(cy, h)))?;
    Ok(([x, y, x + w, y + h].map(|v| v as u32), drop.max(0.0)))
}

/// The occlusion box of a projected prototype on its source image (normalised CHW,
/// `3 × size × size`, as the model saw it): [`best_occluded_window`] of the size of the
/// source patch's box.
pub fn source_occlusion_box(
    model: &ProtoTree,
    chw: &[f32],
    size: usize,
    record: &ProjectionRecord,
    batch_size: usize,
    device: &Device,
) -> Result<PixelBox> {
    let patch = crate::localization::source_box(record, size as u32);
    let (w, h) = (
        (patch[2] - patch[0]) as usize,
        (patch[3] - patch[1]) as usize,
    );
    let row = record.row as usize;
    Ok(best_occluded_window(model, chw, size, row, w, h, batch_size, device)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(size: usize) -> Vec<f32> {
        (0..3 * size * size)
            .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
            .collect()
    }

    #[test]
    fn offsets_cover_the_axis_and_end_flush() {
        assert_eq!(offsets(64, 16, 8), vec![0, 8, 16, 24, 32, 40, 48]);
        assert_eq!(offsets(10, 4, 4), vec![0, 4, 6]);
        assert_eq!(offsets(4, 8, 2), vec![0]);
        assert_eq!(
            Occluder::covering([[0, 0, 12, 16], [4, 4, 10, 14]]),
            Occluder {
                side: 16,
                stride: 8
            }
        );
        assert_eq!(Occluder::covering([]), Occluder { side: 1, stride: 1 });
    }

    #[test]
    fn occluding_fills_the_box_with_the_channel_mean() {
        let size = 4;
        let img = image(size);
        let means = channel_means(&img, 16);
        let mut out = Vec::new();
        push_occluded(&mut out, &img, &means, size, [1, 2, 3, 4]);
        for (c, mean) in means.iter().enumerate() {
            for y in 0..size {
                for x in 0..size {
                    let i = c * 16 + y * size + x;
                    let inside = (1..3).contains(&x) && (2..4).contains(&y);
                    assert_eq!(out[i], if inside { *mean } else { img[i] }, "{c} {x} {y}");
                }
            }
        }
    }

    /// The maps against an independent computation: one forward pass per occluded copy,
    /// the drops spread over the squares by brute force.
    #[test]
    fn maps_match_one_square_at_a_time() -> anyhow::Result<()> {
        let tree = prototree_tree::testing::small_cnn_tree(2, 4, 3, 0)?;
        let size = 32;
        let dev = Device::Cpu;
        let chw = image(size);
        let occ = Occluder {
            side: 12,
            stride: 6,
        };
        let maps = occlusion_maps(&tree, &chw, size, &[vec![0, 2]], &[occ], 7, &dev)?;
        let sim = |img: &[f32]| -> anyhow::Result<Vec<f32>> {
            let t = Tensor::from_slice(img, (1, 3, size, size), &dev)?;
            Ok(tree
                .forward(&t, false)?
                .routing
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        let before = sim(&chw)?;
        let means = channel_means(&chw, size * size);
        for (k, &row) in [0usize, 2].iter().enumerate() {
            let mut sum = vec![0f32; size * size];
            let mut n = vec![0f32; size * size];
            for y0 in offsets(size, 12, 6) {
                for x0 in offsets(size, 12, 6) {
                    let mut occluded = Vec::new();
                    let b = [x0, y0, x0 + 12, y0 + 12].map(|v| v as u32);
                    push_occluded(&mut occluded, &chw, &means, size, b);
                    let drop = (before[row] - sim(&occluded)?[row]).max(0.0);
                    for y in y0..y0 + 12 {
                        for x in x0..x0 + 12 {
                            sum[y * size + x] += drop;
                            n[y * size + x] += 1.0;
                        }
                    }
                }
            }
            for (i, (s, c)) in sum.iter().zip(&n).enumerate() {
                let want = s / c;
                assert!((maps[0][k][i] - want).abs() < 1e-5, "row {row} px {i}");
            }
        }
        Ok(())
    }

    /// The coarse-to-fine search finds the window an exhaustive search at the fine step
    /// finds on a model whose similarity depends on one region only.
    #[test]
    fn the_search_finds_the_window_that_breaks_the_match() -> anyhow::Result<()> {
        let tree = prototree_tree::testing::small_cnn_tree(2, 4, 3, 0)?;
        let size = 32;
        let dev = Device::Cpu;
        let chw = image(size);
        let (b, drop) = best_occluded_window(&tree, &chw, size, 1, 8, 8, 16, &dev)?;
        assert_eq!((b[2] - b[0], b[3] - b[1]), (8, 8));
        assert!(b[2] <= 32 && b[3] <= 32);
        // The reported drop is what filling that box does.
        let means = channel_means(&chw, size * size);
        let mut batch = chw.clone();
        push_occluded(&mut batch, &chw, &means, size, b);
        let sims = similarities(&tree, &batch, size, 2, &dev)?;
        assert!((drop - (sims[0][1] - sims[1][1]).max(0.0)).abs() < 1e-6);
        // No window at the fine step (1 px) drops it by more than a little beyond the search's.
        let mut exhaustive = chw.clone();
        for y in 0..=24 {
            for x in 0..=24 {
                let w = [x, y, x + 8, y + 8].map(|v| v as u32);
                push_occluded(&mut exhaustive, &chw, &means, size, w);
            }
        }
        let all = similarities(&tree, &exhaustive, size, 64, &dev)?;
        let best = all[1..]
            .iter()
            .map(|s| all[0][1] - s[1])
            .fold(f32::NEG_INFINITY, f32::max);
        assert!(drop <= best + 1e-6);
        assert!(
            drop >= 0.8 * best,
            "coarse-to-fine {drop} against exhaustive {best}"
        );
        Ok(())
    }

    #[test]
    fn bad_inputs_are_refused() -> anyhow::Result<()> {
        let tree = prototree_tree::testing::small_cnn_tree(2, 4, 3, 0)?;
        let dev = Device::Cpu;
        let occ = Occluder::covering([[0, 0, 4, 4]]);
        assert!(occlusion_maps(&tree, &[0.0; 10], 8, &[vec![0]], &[occ], 4, &dev).is_err());
        assert!(occlusion_maps(&tree, &image(8), 8, &[vec![99]], &[occ], 4, &dev).is_err());
        assert!(occlusion_maps(&tree, &image(8), 8, &[vec![0]], &[], 4, &dev).is_err());
        assert!(best_occluded_window(&tree, &image(8), 8, 99, 4, 4, 4, &dev).is_err());
        Ok(())
    }
}
