//! Relevance of a prototype's similarity map (CaBRNet, Xu-Darme et al. 2024): how much of
//! the upsampled map's energy lies inside the object (or part) mask, and the pointing game
//! (whether the map's hottest pixels are inside the mask).

use prototree_tree::geometry::upsample;

/// The attribution map of a similarity map `sim` (`fh × fw`): bicubic upsampling to
/// `width × height` (OpenCV's `INTER_CUBIC`, as the reference's heatmaps) and min-max
/// normalisation to [0, 1]. A constant map becomes all ones.
pub fn attribution_map(sim: &[f32], fh: usize, fw: usize, width: u32, height: u32) -> Vec<f32> {
    let mut up = upsample(sim, fh, fw, width, height);
    min_max_normalise(&mut up, 1e-12);
    up
}

/// Maps `values` linearly onto [0, 1] (the smallest to 0, the largest to 1); values whose
/// range is at most `min_span` all become 1.
pub fn min_max_normalise(values: &mut [f32], min_span: f32) {
    let (lo, hi) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let span = hi - lo;
    for v in values {
        *v = if span > min_span {
            (*v - lo) / span
        } else {
            1.0
        };
    }
}

/// Energy-based pointing game: the share of the map's total (non-negative) mass inside
/// `mask`. `None` for a zero map or a size mismatch.
pub fn energy_share(attribution: &[f32], mask: &[bool]) -> Option<f64> {
    if attribution.len() != mask.len() {
        return None;
    }
    let (inside, total) = attribution
        .iter()
        .zip(mask)
        .fold((0f64, 0f64), |(i, t), (a, m)| {
            let a = f64::from(a.max(0.0));
            (if *m { i + a } else { i }, t + a)
        });
    (total > 0.0).then(|| inside / total)
}

/// Pointing game over the top `q` share of pixels: the share of the
/// `max(1, round(q · n))` highest-valued pixels (ties: lower index first) inside `mask`.
/// `None` for an empty map, a size mismatch or `q` outside (0, 1].
pub fn pointing_game(attribution: &[f32], mask: &[bool], q: f64) -> Option<f64> {
    let n = attribution.len();
    if n == 0 || n != mask.len() || !(q > 0.0 && q <= 1.0) {
        return None;
    }
    let m = ((q * n as f64).round() as usize).clamp(1, n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| attribution[b].total_cmp(&attribution[a]).then(a.cmp(&b)));
    let hits = order[..m].iter().filter(|&&i| mask[i]).count();
    Some(hits as f64 / m as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_and_pointing() {
        let a = [1.0f32, 0.0, 3.0, 0.0];
        let m = [false, false, true, true];
        assert_eq!(energy_share(&a, &m), Some(0.75));
        assert_eq!(energy_share(&[0.0; 4], &m), None);
        assert_eq!(energy_share(&a, &m[..2]), None);
        // Top 25% = the single pixel 2 (inside); top 50% = pixels 2 and 0.
        assert_eq!(pointing_game(&a, &m, 0.25), Some(1.0));
        assert_eq!(pointing_game(&a, &m, 0.5), Some(0.5));
        assert_eq!(pointing_game(&a, &m, 0.0), None);
    }

    #[test]
    fn attribution_maps_are_normalised() {
        let up = attribution_map(&[0.0, 0.0, 0.0, 1.0], 2, 2, 8, 8);
        assert_eq!(up.len(), 64);
        let max = up.iter().cloned().fold(f32::MIN, f32::max);
        let min = up.iter().cloned().fold(f32::MAX, f32::min);
        assert!((max - 1.0).abs() < 1e-6 && min.abs() < 1e-6);
        // The hot cell is bottom-right.
        assert!(up[63] > up[0]);
        assert!(attribution_map(&[0.5; 4], 2, 2, 4, 4)
            .iter()
            .all(|v| *v == 1.0));
    }
}
