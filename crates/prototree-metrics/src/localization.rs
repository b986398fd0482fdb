//! Part localization of projected prototypes: which annotated part the source patch of
//! each prototype covers, and the shares on a part, on the object and on the background.

use prototree_tree::geometry::{patch_box, PixelBox};
use prototree_tree::io::ProjectionRecord;

use crate::annotation::Annotation;
use crate::parts::{Region, RegionLabel};

/// The box of a projected prototype's source patch in its image as the model saw it
/// (`size × size`), as the reference draws it.
pub fn source_box(record: &ProjectionRecord, size: u32) -> PixelBox {
    patch_box(
        record.patch_row,
        record.patch_col,
        record.fmap_height,
        record.fmap_width,
        size,
        size,
    )
}

/// What the source patch of `record` shows, given the annotation of its source image at
/// the model's input size.
pub fn locate(annotation: &Annotation, record: &ProjectionRecord, min_part_share: f32) -> Region {
    annotation.region(source_box(record, annotation.width), min_part_share)
}

/// Shares of located prototypes on an annotated part and on the object.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LocalizationShares {
    /// Prototypes with a known label (not [`RegionLabel::Unknown`]).
    pub located: usize,
    /// Share of them on an annotated part.
    pub on_part: f64,
    /// Share of them on the object (a part or the rest of it).
    pub on_object: f64,
}

/// Localization shares of the prototypes' source regions (unknown ones are left out;
/// shares are 0 when none is located).
pub fn localization_shares(regions: &[Region]) -> LocalizationShares {
    let known: Vec<&Region> = regions
        .iter()
        .filter(|r| r.label != RegionLabel::Unknown)
        .collect();
    if known.is_empty() {
        return LocalizationShares::default();
    }
    let n = known.len() as f64;
    LocalizationShares {
        located: known.len(),
        on_part: known.iter().filter(|r| r.label.part().is_some()).count() as f64 / n,
        on_object: known.iter().filter(|r| r.label.on_object()).count() as f64 / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotation::tests::mask_with;
    use crate::annotation::{part_label, LABEL_OBJECT};
    use prototree_tree::topology::NodeId;

    fn record(row: u32, patch_row: u32, patch_col: u32) -> ProjectionRecord {
        ProjectionRecord {
            node: NodeId(row),
            row,
            image_index: 0,
            image_path: "x.png".into(),
            patch_row,
            patch_col,
            fmap_height: 8,
            fmap_width: 8,
            distance: 0.0,
        }
    }

    /// A 64×64 image (8×8 map, 8-px cells): background left half, body right half,
    /// part 1 ("beak") filling the 24×24 square around cell (2, 6).
    fn bird() -> Annotation {
        let mask = mask_with(
            64,
            &[
                (0..64, 32..64, LABEL_OBJECT),
                (8..32, 40..64, part_label(1)),
            ],
        );
        Annotation {
            width: 64,
            height: 64,
            num_parts: 5,
            mask: Some(mask),
            mask_has_parts: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_prototype_on_a_part_is_on_part_and_one_on_background_is_not() {
        let ann = bird();
        // Cell (2, 6): box [44, 12, 56, 28) (see visualize's tests: 12-px boxes), all beak.
        let on_part = locate(&ann, &record(0, 2, 6), 0.05);
        assert_eq!(on_part.label, RegionLabel::Part(1));
        // Cell (6, 1): all background.
        let on_background = locate(&ann, &record(1, 6, 1), 0.05);
        assert_eq!(on_background.label, RegionLabel::Background);
        // Cell (6, 6): body only.
        let on_body = locate(&ann, &record(2, 6, 6), 0.05);
        assert_eq!(on_body.label, RegionLabel::Object);
        let all_part = localization_shares(&[on_part, on_part]);
        assert_eq!((all_part.on_part, all_part.on_object), (1.0, 1.0));
        let none = localization_shares(&[on_background]);
        assert_eq!((none.on_part, none.on_object), (0.0, 0.0));
        let mixed = localization_shares(&[on_part, on_background, on_body]);
        assert!((mixed.on_part - 1.0 / 3.0).abs() < 1e-12);
        assert!((mixed.on_object - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(localization_shares(&[]), LocalizationShares::default());
    }
}
