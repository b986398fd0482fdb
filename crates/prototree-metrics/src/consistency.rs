//! Which parts a prototype activates on, across images: purity (PIP-Net), consistency and
//! stability (Huang et al.).
//!
//! Each function takes, per image, the set of annotated parts inside the prototype's
//! activated region (its nearest patch's box); the functions are pure.

use serde::{Deserialize, Serialize};

use crate::parts::{PartSet, MAX_PARTS};

/// The most frequent part of a collection of regions and its share.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PartShare {
    /// The most frequent part (lowest index on ties); `None` when no region has a part.
    pub part: Option<usize>,
    /// Its share in [0, 1] (0 when no region has a part).
    pub share: f64,
}

/// The part contained in the most of `regions` and the share of regions containing it
/// (PIP-Net's purity when `regions` are a prototype's top activations). `None` for no
/// regions.
pub fn purity(regions: &[PartSet]) -> Option<PartShare> {
    if regions.is_empty() {
        return None;
    }
    let mut best = PartShare {
        part: None,
        share: 0.0,
    };
    for p in 0..MAX_PARTS {
        let hits = regions.iter().filter(|s| s.contains(p)).count();
        let share = hits as f64 / regions.len() as f64;
        if hits > 0 && share > best.share {
            best = PartShare {
                part: Some(p),
                share,
            };
        }
    }
    Some(best)
}

/// Consistency of one prototype (Huang et al. 2023).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Consistency {
    /// The most consistent part and the share of the images showing it in which the
    /// prototype's region contains it.
    pub best: PartShare,
    /// Whether that share reaches the threshold.
    pub consistent: bool,
}

/// Huang et al.'s consistency: for each part `k`, the share of the images *in which `k`
/// is visible* whose activated region contains `k`; the prototype is consistent when the
/// largest share reaches `threshold` (they use 0.8). `activated[i]` and `visible[i]` are
/// the parts in the region and in the whole of image `i`. `None` for no images.
pub fn consistency(
    activated: &[PartSet],
    visible: &[PartSet],
    threshold: f64,
) -> Option<Consistency> {
    if activated.is_empty() || activated.len() != visible.len() {
        return None;
    }
    let mut best = PartShare {
        part: None,
        share: 0.0,
    };
    for p in 0..MAX_PARTS {
        let shown = visible.iter().filter(|v| v.contains(p)).count();
        if shown == 0 {
            continue;
        }
        let hits = activated
            .iter()
            .zip(visible)
            .filter(|(a, v)| a.contains(p) && v.contains(p))
            .count();
        let share = hits as f64 / shown as f64;
        if hits > 0 && share > best.share {
            best = PartShare {
                part: Some(p),
                share,
            };
        }
    }
    Some(Consistency {
        best,
        consistent: best.part.is_some() && best.share >= threshold,
    })
}

/// Huang et al.'s stability of one prototype: the share of images whose activated parts
/// are exactly the same with and without input noise. `None` for no images or a length
/// mismatch.
pub fn stability(clean: &[PartSet], noisy: &[PartSet]) -> Option<f64> {
    if clean.is_empty() || clean.len() != noisy.len() {
        return None;
    }
    let same = clean.iter().zip(noisy).filter(|(a, b)| a == b).count();
    Some(same as f64 / clean.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: &[usize]) -> PartSet {
        PartSet::from_parts(p)
    }

    #[test]
    fn purity_counts_the_most_frequent_part() {
        assert_eq!(purity(&[]), None);
        let r = purity(&[s(&[1]), s(&[1, 2]), s(&[2]), s(&[1])]).unwrap();
        assert_eq!(r.part, Some(1));
        assert!((r.share - 0.75).abs() < 1e-12);
        let none = purity(&[s(&[]), s(&[])]).unwrap();
        assert_eq!((none.part, none.share), (None, 0.0));
    }

    #[test]
    fn consistency_normalises_by_visibility() {
        // Part 0 visible in 4 images, hit in 3 (0.75); part 1 visible in 2, hit in 2 (1.0).
        let act = [s(&[0]), s(&[0, 1]), s(&[0, 1]), s(&[])];
        let vis = [s(&[0]), s(&[0, 1]), s(&[0, 1]), s(&[0])];
        let c = consistency(&act, &vis, 0.8).unwrap();
        assert_eq!(c.best.part, Some(1));
        assert!(c.consistent);
        // Without part 1 the best is 0.75 < 0.8.
        let act = [s(&[0]), s(&[0]), s(&[0]), s(&[])];
        let c = consistency(&act, &vis, 0.8).unwrap();
        assert_eq!(c.best.part, Some(0));
        assert!(!c.consistent && (c.best.share - 0.75).abs() < 1e-12);
        assert!(consistency(&act, &vis, 0.75).unwrap().consistent);
        // Background everywhere: not consistent.
        let c = consistency(&[s(&[]); 4], &vis, 0.8).unwrap();
        assert!(!c.consistent && c.best.part.is_none());
        assert_eq!(consistency(&[], &[], 0.8), None);
    }

    #[test]
    fn stability_compares_whole_sets() {
        let clean = [s(&[0]), s(&[0, 1]), s(&[]), s(&[2])];
        let noisy = [s(&[0]), s(&[0]), s(&[]), s(&[2])];
        assert_eq!(stability(&clean, &noisy), Some(0.75));
        assert_eq!(stability(&clean, &clean), Some(1.0));
        assert_eq!(stability(&clean, &noisy[..2]), None);
    }
}
