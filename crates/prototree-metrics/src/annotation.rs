//! The ground truth of one image at the model's input resolution: a label mask
//! (background / object / parts) and part keypoints, and what a box of the image covers.
//!
//! Parts of a region come from the mask when it carries part labels (the synthetic
//! birds), else from the keypoints inside the box (CUB's `part_locs.txt`).

use prototree_tree::geometry::PixelBox;

use crate::parts::{PartSet, Region, RegionLabel, MAX_PARTS};
use crate::{Error, Result};

/// Mask label of the background.
pub const LABEL_BACKGROUND: u8 = 0;
/// Mask label of the object outside its annotated parts.
pub const LABEL_OBJECT: u8 = 1;

/// Mask label of part `part` (0-based).
pub fn part_label(part: usize) -> u8 {
    (part.min(253) + 2) as u8
}

/// A visible part keypoint, in pixels of the model's input image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keypoint {
    /// Part index (0-based).
    pub part: usize,
    /// X in pixels.
    pub x: f32,
    /// Y in pixels.
    pub y: f32,
}

/// The pixel count of each part (index = part) in a whole mask.
fn part_pixels(mask: &[u8], num_parts: usize) -> Vec<usize> {
    let mut out = vec![0usize; num_parts];
    for &l in mask {
        if let Some(c) = usize::from(l).checked_sub(2).and_then(|p| out.get_mut(p)) {
            *c += 1;
        }
    }
    out
}

/// The annotations of one image, at the size the model sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Annotation {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Number of annotated part kinds in the data set.
    pub num_parts: usize,
    /// Row-major label per pixel ([`LABEL_BACKGROUND`], [`LABEL_OBJECT`] or
    /// [`part_label`]), when a segmentation mask exists.
    pub mask: Option<Vec<u8>>,
    /// Whether the mask carries part labels (else only object / background).
    pub mask_has_parts: bool,
    /// Whether the parts of a region and the visible parts come from the keypoints even
    /// when the mask carries part labels (the mask still gives part masks and the object).
    pub regions_from_keypoints: bool,
    /// Visible part keypoints.
    pub keypoints: Vec<Keypoint>,
    /// The object's bounding box `[x0, y0, x1, y1]` in pixels, when annotated.
    pub object_box: Option<[f32; 4]>,
}

impl Annotation {
    /// Checks the mask size and the part count.
    pub fn check(&self) -> Result<()> {
        if self.num_parts > MAX_PARTS {
            return Err(Error::Invalid(format!(
                "{} parts; at most {MAX_PARTS} are supported",
                self.num_parts
            )));
        }
        if let Some(m) = &self.mask {
            let want = self.width as usize * self.height as usize;
            if m.len() != want {
                return Err(Error::Invalid(format!(
                    "mask of {} labels for a {}×{} image",
                    m.len(),
                    self.width,
                    self.height
                )));
            }
        }
        Ok(())
    }

    /// Whether the parts come from the mask (else from keypoints).
    fn parts_from_mask(&self) -> bool {
        self.mask_has_parts && self.mask.is_some() && !self.regions_from_keypoints
    }

    /// The parts visible anywhere in the image.
    pub fn visible_parts(&self) -> PartSet {
        let mut s = PartSet::EMPTY;
        match (&self.mask, self.parts_from_mask()) {
            (Some(mask), true) => {
                for &l in mask {
                    if l >= 2 && usize::from(l - 2) < self.num_parts {
                        s.insert(usize::from(l - 2));
                    }
                }
            }
            _ => {
                for k in &self.keypoints {
                    s.insert(k.part);
                }
            }
        }
        s
    }

    /// The box clipped to the image, as `(x0, y0, x1, y1)` with `x0 < x1`, `y0 < y1`
    /// (`None` for an empty box).
    fn clip(&self, b: PixelBox) -> Option<(usize, usize, usize, usize)> {
        let x1 = b[2].min(self.width) as usize;
        let y1 = b[3].min(self.height) as usize;
        let (x0, y0) = (b[0] as usize, b[1] as usize);
        (x0 < x1 && y0 < y1).then_some((x0, y0, x1, y1))
    }

    /// What box `b` covers. With a part mask: the parts with at least `min_part_share` of
    /// the box's pixels or at least half of their own pixels inside it (so a part smaller
    /// than `min_part_share` of the box, like a 4-px eye in a 16-px box, counts when the
    /// box holds it); the label is the one of them with the most pixels in the box, else
    /// "object" when at least half of the pixels are on the object, else background.
    /// With keypoints: the parts whose keypoint lies in the box; the label is the part
    /// whose keypoint is nearest the box centre, else object / background from the
    /// object mask (half of the pixels) or, without one, from whether the box centre lies
    /// in the object's bounding box.
    pub fn region(&self, b: PixelBox, min_part_share: f32) -> Region {
        let Some((x0, y0, x1, y1)) = self.clip(b) else {
            return Region {
                parts: PartSet::EMPTY,
                label: RegionLabel::Unknown,
                object_share: None,
            };
        };
        let total = ((x1 - x0) * (y1 - y0)) as f32;
        let mut counts = vec![0usize; self.num_parts + 2];
        let object_share = self.mask.as_ref().map(|mask| {
            let w = self.width as usize;
            let mut object = 0usize;
            for y in y0..y1 {
                for &l in &mask[y * w + x0..y * w + x1] {
                    if l >= LABEL_OBJECT {
                        object += 1;
                    }
                    if let Some(c) = counts.get_mut(usize::from(l)) {
                        *c += 1;
                    }
                }
            }
            object as f32 / total
        });
        let fallback = |object_share: Option<f32>| match object_share {
            Some(s) if s >= 0.5 => RegionLabel::Object,
            Some(_) => RegionLabel::Background,
            None => match self.object_box {
                Some([bx0, by0, bx1, by1]) => {
                    let (cx, cy) = ((x0 + x1) as f32 / 2.0, (y0 + y1) as f32 / 2.0);
                    if cx >= bx0 && cx <= bx1 && cy >= by0 && cy <= by1 {
                        RegionLabel::Object
                    } else {
                        RegionLabel::Background
                    }
                }
                None => RegionLabel::Unknown,
            },
        };
        if let (Some(mask), true) = (&self.mask, self.parts_from_mask()) {
            let whole = part_pixels(mask, self.num_parts);
            let mut parts = PartSet::EMPTY;
            let mut best: Option<(usize, usize)> = None;
            for (p, &all) in whole.iter().enumerate() {
                let c = counts[p + 2];
                let enough_of_box = c as f32 >= min_part_share * total;
                let most_of_part = 2 * c >= all;
                if c > 0 && (enough_of_box || most_of_part) {
                    parts.insert(p);
                    if best.is_none_or(|(_, bc)| c > bc) {
                        best = Some((p, c));
                    }
                }
            }
            let label = match best {
                Some((p, _)) => RegionLabel::Part(p),
                None => fallback(object_share),
            };
            return Region {
                parts,
                label,
                object_share,
            };
        }
        let (cx, cy) = ((x0 + x1) as f32 / 2.0, (y0 + y1) as f32 / 2.0);
        let mut parts = PartSet::EMPTY;
        let mut best: Option<(usize, f32)> = None;
        for k in &self.keypoints {
            let inside = k.x >= x0 as f32 && k.x < x1 as f32 && k.y >= y0 as f32 && k.y < y1 as f32;
            if inside && k.part < self.num_parts {
                parts.insert(k.part);
                let d = (k.x - cx).powi(2) + (k.y - cy).powi(2);
                if best.is_none_or(|(_, bd)| d < bd) {
                    best = Some((k.part, d));
                }
            }
        }
        let label = match best {
            Some((p, _)) => RegionLabel::Part(p),
            None => fallback(object_share),
        };
        Region {
            parts,
            label,
            object_share,
        }
    }

    /// Per pixel: whether it is on the object (mask label ≥ object; without a mask, inside
    /// the object's bounding box). `None` when neither is annotated.
    pub fn object_mask(&self) -> Option<Vec<bool>> {
        if let Some(m) = &self.mask {
            return Some(m.iter().map(|&l| l >= LABEL_OBJECT).collect());
        }
        let [bx0, by0, bx1, by1] = self.object_box?;
        let w = self.width as usize;
        Some(
            (0..w * self.height as usize)
                .map(|i| {
                    let (x, y) = ((i % w) as f32 + 0.5, (i / w) as f32 + 0.5);
                    x >= bx0 && x <= bx1 && y >= by0 && y <= by1
                })
                .collect(),
        )
    }

    /// Per pixel: whether it belongs to part `part`; `None` without a part mask.
    pub fn part_mask(&self, part: usize) -> Option<Vec<bool>> {
        if !self.mask_has_parts || part >= self.num_parts {
            return None;
        }
        let label = part_label(part);
        self.mask
            .as_ref()
            .map(|m| m.iter().map(|&l| l == label).collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `side`×`side` background mask with each `(rows, columns, label)` painted in order.
    pub(crate) fn mask_with(
        side: usize,
        painted: &[(std::ops::Range<usize>, std::ops::Range<usize>, u8)],
    ) -> Vec<u8> {
        let mut mask = vec![LABEL_BACKGROUND; side * side];
        for (ys, xs, label) in painted {
            for y in ys.clone() {
                mask[y * side + xs.start..y * side + xs.end].fill(*label);
            }
        }
        mask
    }

    /// A 16×16 image: background, an object square [4, 12)², part 0 in [4, 8)², part 1
    /// a single pixel at (11, 11).
    pub(crate) fn square_bird() -> Annotation {
        let mut mask = mask_with(
            16,
            &[(4..12, 4..12, LABEL_OBJECT), (4..8, 4..8, part_label(0))],
        );
        mask[11 * 16 + 11] = part_label(1);
        Annotation {
            width: 16,
            height: 16,
            num_parts: 3,
            mask: Some(mask),
            mask_has_parts: true,
            regions_from_keypoints: false,
            keypoints: vec![],
            object_box: None,
        }
    }

    #[test]
    fn mask_regions() {
        let a = square_bird();
        a.check().unwrap();
        assert_eq!(a.visible_parts(), PartSet::from_parts(&[0, 1]));
        let on_part = a.region([4, 4, 8, 8], 0.05);
        assert_eq!(on_part.label, RegionLabel::Part(0));
        assert_eq!(on_part.object_share, Some(1.0));
        let bg = a.region([0, 0, 4, 4], 0.05);
        assert_eq!(bg.label, RegionLabel::Background);
        assert!(bg.parts.is_empty());
        // Part 1 is 1 pixel of the 16 (6.25 % < 10 %) but all of part 1 is inside: it
        // counts whatever the threshold.
        let small = a.region([8, 8, 12, 12], 0.5);
        assert_eq!(small.label, RegionLabel::Part(1));
        // Three pixels of part 0 (3 of 16 in the box, 3 of its 16): below a 25 % share
        // of the box and below half of the part, so not in; at 15 % of the box it is.
        let corner = a.region([7, 5, 11, 9], 0.25);
        assert_eq!(corner.parts, PartSet::EMPTY);
        assert_eq!(corner.label, RegionLabel::Object);
        assert_eq!(
            a.region([7, 5, 11, 9], 0.15).parts,
            PartSet::from_parts(&[0])
        );
        // A box over both: both listed, part 0 (more pixels) is the label, also when part
        // 1 is whole and part 0 only clipped (4 pixels against 1).
        let both = a.region([4, 4, 12, 12], 0.01);
        assert_eq!(both.label, RegionLabel::Part(0));
        assert_eq!(both.parts, PartSet::from_parts(&[0, 1]));
        let clipped = a.region([6, 6, 16, 16], 0.01);
        assert_eq!(clipped.parts, PartSet::from_parts(&[0, 1]));
        assert_eq!(clipped.label, RegionLabel::Part(0));
        // Boxes are clipped; an empty box is unknown.
        assert_eq!(
            a.region([14, 14, 40, 40], 0.05).label,
            RegionLabel::Background
        );
        assert_eq!(a.region([20, 20, 30, 30], 0.05).label, RegionLabel::Unknown);
        assert_eq!(a.part_mask(0).unwrap().iter().filter(|v| **v).count(), 16);
        assert_eq!(a.object_mask().unwrap().iter().filter(|v| **v).count(), 64);
    }

    #[test]
    fn keypoints_can_override_a_part_mask() {
        // Part 0's keypoint at (5, 5) inside its mask square; part 1's pixel at (11, 11)
        // has no keypoint (say, its annotator missed it).
        let mut a = square_bird();
        a.keypoints = vec![Keypoint {
            part: 0,
            x: 5.0,
            y: 5.0,
        }];
        a.regions_from_keypoints = true;
        assert_eq!(a.visible_parts(), PartSet::from_parts(&[0]));
        // The box holds all of part 0's pixels but not its keypoint: no part.
        let beside = a.region([6, 6, 12, 12], 0.05);
        assert_eq!(beside.parts, PartSet::EMPTY);
        assert_eq!(beside.label, RegionLabel::Object);
        assert_eq!(a.region([4, 4, 6, 6], 0.05).label, RegionLabel::Part(0));
        // The mask still gives the part's pixels and the object.
        assert_eq!(a.part_mask(0).unwrap().iter().filter(|v| **v).count(), 16);
        assert_eq!(a.region([0, 0, 4, 4], 0.05).label, RegionLabel::Background);
    }

    #[test]
    fn keypoint_regions() {
        let a = Annotation {
            width: 20,
            height: 20,
            num_parts: 4,
            mask: None,
            mask_has_parts: false,
            regions_from_keypoints: false,
            keypoints: vec![
                Keypoint {
                    part: 2,
                    x: 5.0,
                    y: 5.0,
                },
                Keypoint {
                    part: 3,
                    x: 2.0,
                    y: 2.0,
                },
            ],
            object_box: Some([0.0, 0.0, 10.0, 10.0]),
        };
        assert_eq!(a.visible_parts(), PartSet::from_parts(&[2, 3]));
        let r = a.region([0, 0, 8, 8], 0.05);
        assert_eq!(r.parts, PartSet::from_parts(&[2, 3]));
        assert_eq!(r.label, RegionLabel::Part(2)); // nearer the centre (4, 4)
        assert_eq!(a.region([6, 6, 10, 10], 0.05).label, RegionLabel::Object);
        assert_eq!(
            a.region([12, 12, 20, 20], 0.05).label,
            RegionLabel::Background
        );
        assert!(a.part_mask(2).is_none());
        assert_eq!(a.object_mask().unwrap().iter().filter(|v| **v).count(), 100);
    }
}
