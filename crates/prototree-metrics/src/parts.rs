//! Sets of annotated parts and the label of an image region.

use serde::{Deserialize, Serialize};

/// Most annotated parts a data set may have (a [`PartSet`] is a 64-bit mask).
pub const MAX_PARTS: usize = 64;

/// A set of part indices (0-based, index = part id − 1 of `parts/parts.txt`); serialised
/// as the list of its parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "Vec<usize>", from = "Vec<usize>")]
pub struct PartSet(pub u64);

impl From<PartSet> for Vec<usize> {
    fn from(s: PartSet) -> Self {
        s.iter().collect()
    }
}

impl From<Vec<usize>> for PartSet {
    fn from(v: Vec<usize>) -> Self {
        PartSet::from_parts(&v)
    }
}

impl PartSet {
    /// The empty set.
    pub const EMPTY: PartSet = PartSet(0);

    /// A set from part indices (indices ≥ [`MAX_PARTS`] are ignored).
    pub fn from_parts(parts: &[usize]) -> Self {
        let mut s = Self::EMPTY;
        for &p in parts {
            s.insert(p);
        }
        s
    }
    /// Adds part `p` (ignored when `p ≥ MAX_PARTS`).
    pub fn insert(&mut self, p: usize) {
        if p < MAX_PARTS {
            self.0 |= 1 << p;
        }
    }
    /// Whether part `p` is in the set.
    pub fn contains(&self, p: usize) -> bool {
        p < MAX_PARTS && self.0 & (1 << p) != 0
    }
    /// Number of parts in the set.
    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
    /// The parts in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..MAX_PARTS).filter(move |p| self.contains(*p))
    }
}

/// What an image region mainly shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "part")]
pub enum RegionLabel {
    /// An annotated part (0-based index).
    Part(usize),
    /// The object, but none of its annotated parts.
    Object,
    /// The background.
    Background,
    /// Not annotated (no mask, no keypoint in the region and no object box).
    Unknown,
}

impl RegionLabel {
    /// The part, when the region is on one.
    pub fn part(&self) -> Option<usize> {
        match self {
            RegionLabel::Part(p) => Some(*p),
            _ => None,
        }
    }
    /// Whether the region is on the object (a part or the rest of the object).
    pub fn on_object(&self) -> bool {
        matches!(self, RegionLabel::Part(_) | RegionLabel::Object)
    }

    /// The label in words, parts named by `part_names` (index = part).
    pub fn describe(&self, part_names: &[String]) -> String {
        match self {
            RegionLabel::Part(p) => part_names
                .get(*p)
                .cloned()
                .unwrap_or_else(|| format!("part {p}")),
            RegionLabel::Object => "object (no part)".to_string(),
            RegionLabel::Background => "background".to_string(),
            RegionLabel::Unknown => "not annotated".to_string(),
        }
    }
}

/// The annotated content of one image region (a prototype's patch box).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// The parts in the region.
    pub parts: PartSet,
    /// What the region mainly shows.
    pub label: RegionLabel,
    /// Share of the region's pixels on the object, when a mask is known.
    pub object_share: Option<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_in_words() {
        let names = vec!["crest".to_string()];
        assert_eq!(RegionLabel::Part(0).describe(&names), "crest");
        assert_eq!(RegionLabel::Part(3).describe(&names), "part 3");
        assert_eq!(RegionLabel::Background.describe(&names), "background");
    }

    #[test]
    fn part_sets() {
        let mut s = PartSet::from_parts(&[0, 3, 63, 64]);
        assert_eq!(s.len(), 3);
        assert!(s.contains(3) && !s.contains(1) && !s.contains(64));
        s.insert(1);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 1, 3, 63]);
        assert!(PartSet::EMPTY.is_empty());
        assert!(RegionLabel::Part(2).on_object() && !RegionLabel::Background.on_object());
        assert_eq!(RegionLabel::Object.part(), None);
    }

    #[test]
    fn autotraits() {
        fn check<T: Send + Sync>() {}
        check::<PartSet>();
        check::<Region>();
    }
}
