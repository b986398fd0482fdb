//! The data protocols: which part of which image goes into the training, projection and
//! test sets.
//!
//! [`Protocol::Reference`] is the ProtoTree reference's CUB-200-2011 preparation
//! (`preprocess_data/cub.py`), done on the fly instead of by writing cropped copies:
//!
//! - training set: every training image five times, the full image and four corner crops,
//!   each from one image corner to the far side of the bounding box plus a margin of 10 %
//!   of the box's width / height (truncated to whole pixels, clamped to the image);
//! - projection set: the training images cropped to their bounding boxes;
//! - test set: the full test images.
//!
//! Crop coordinates are rounded as Pillow's `Image.crop` rounds them (half to even). An
//! image without a bounding box (ImageFolder data sets, which is also how the reference
//! treats Stanford Cars) is used whole in every set. [`Protocol::Plain`] is the protocol of
//! builds before it: whole images everywhere, or bounding-box crops for training and test
//! with `crop_to_bbox`.

use image::{imageops, RgbImage};
use serde::{Deserialize, Serialize};

use crate::cub::{BBox, Sample};

/// How the training, projection and test images are drawn from a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// The reference's CUB protocol (see the module documentation).
    #[default]
    Reference,
    /// Every image once, whole (or cropped to its box with `crop_to_bbox`, training and
    /// test alike); projection on the whole training images.
    Plain,
}

impl Protocol {
    /// The names in configuration files and on the command line.
    pub const NAMES: [&'static str; 2] = ["reference", "plain"];

    /// The name in configuration files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Reference => Self::NAMES[0],
            Protocol::Plain => Self::NAMES[1],
        }
    }

    /// The views of `sample` that go into the set `role`; `crop_to_bbox` is the plain
    /// protocol's option (the reference protocol ignores it).
    pub fn views(self, role: Role, sample: &Sample, crop_to_bbox: bool) -> Vec<View> {
        let boxed = sample.bbox.is_some();
        match (self, role) {
            (Protocol::Reference, Role::Train) if boxed => View::REFERENCE_TRAINING.to_vec(),
            (Protocol::Reference, Role::Projection) if boxed => vec![View::BBox],
            (Protocol::Reference, _) => vec![View::Full],
            (Protocol::Plain, Role::Projection) => vec![View::Full],
            (Protocol::Plain, _) if crop_to_bbox && boxed => vec![View::BBox],
            (Protocol::Plain, _) => vec![View::Full],
        }
    }
}

impl Protocol {
    /// Each of `samples` with its views for the set `role` ([`Protocol::views`]), as
    /// [`crate::Loader::with_views`] takes them.
    pub fn view_list(
        self,
        role: Role,
        samples: Vec<Sample>,
        crop_to_bbox: bool,
    ) -> Vec<(Sample, Vec<View>)> {
        samples
            .into_iter()
            .map(|s| {
                let v = self.views(role, &s, crop_to_bbox);
                (s, v)
            })
            .collect()
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Protocol {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "reference" => Ok(Protocol::Reference),
            "plain" => Ok(Protocol::Plain),
            other => Err(crate::Error::Config(format!(
                "unknown data protocol `{other}` (expected {})",
                Self::NAMES.join(" or ")
            ))),
        }
    }
}

/// The set an image goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Training (augmented, shuffled).
    Train,
    /// Prototype projection (training images, not augmented).
    Projection,
    /// Evaluation on the test split.
    Test,
}

/// A part of an image: the whole of it, its bounding box, or a corner crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// The whole image.
    Full,
    /// The bounding box.
    BBox,
    /// From the top-left corner to the box's right and bottom edges plus the margins.
    UpperLeft,
    /// From the bottom-left corner to the box's right and top edges plus the margins.
    LowerLeft,
    /// From the top-right corner to the box's left and bottom edges plus the margins.
    UpperRight,
    /// From the bottom-right corner to the box's left and top edges plus the margins.
    LowerRight,
}

/// A crop rectangle in whole pixels: columns `left..right`, rows `top..bottom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CropRect {
    /// First column.
    pub left: u32,
    /// First row.
    pub top: u32,
    /// One past the last column.
    pub right: u32,
    /// One past the last row.
    pub bottom: u32,
}

impl CropRect {
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.right - self.left
    }
    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.bottom - self.top
    }
    /// The part of `img` inside the rectangle.
    pub fn crop(&self, img: &RgbImage) -> RgbImage {
        imageops::crop_imm(img, self.left, self.top, self.width(), self.height()).to_image()
    }
}

/// Pillow's rounding of a crop coordinate (Python's `round`: half to even), clamped to
/// `0..=max`.
fn pil_round(v: f64, max: u32) -> u32 {
    v.round_ties_even().clamp(0.0, f64::from(max)) as u32
}

impl View {
    /// The reference's training views of an image with a bounding box, in the order of
    /// `preprocess_data/cub.py`'s writes (which the shuffled training set does not keep).
    pub const REFERENCE_TRAINING: [View; 5] = [
        View::Full,
        View::UpperLeft,
        View::LowerLeft,
        View::UpperRight,
        View::LowerRight,
    ];

    /// The pixels of a `width × height` image this view takes, when `bbox` is its box
    /// (`None`: the whole image; also for a box-relative view without a box, or one whose
    /// crop would be empty).
    pub fn rect(self, bbox: Option<&BBox>, width: u32, height: u32) -> Option<CropRect> {
        let b = match (self, bbox) {
            (View::Full, _) | (_, None) => return None,
            (_, Some(b)) => b,
        };
        let (x, y, w, h) = (
            f64::from(b.x),
            f64::from(b.y),
            f64::from(b.width),
            f64::from(b.height),
        );
        // int(0.1 * w) in the reference: truncated towards zero.
        let (wm, hm) = ((0.1 * w).trunc(), (0.1 * h).trunc());
        let (fw, fh) = (f64::from(width), f64::from(height));
        let right_of_box = (x + w + wm).min(fw);
        let below_box = (y + h + hm).min(fh);
        let left_of_box = (x - wm).max(0.0);
        let above_box = (y - hm).max(0.0);
        let [l, t, r, btm] = match self {
            View::Full => return None,
            View::BBox => [x, y, x + w, y + h],
            View::UpperLeft => [0.0, 0.0, right_of_box, below_box],
            View::LowerLeft => [0.0, above_box, right_of_box, fh],
            View::UpperRight => [left_of_box, 0.0, fw, below_box],
            View::LowerRight => [left_of_box, above_box, fw, fh],
        };
        let rect = CropRect {
            left: pil_round(l, width),
            top: pil_round(t, height),
            right: pil_round(r, width),
            bottom: pil_round(btm, height),
        };
        (rect.right > rect.left && rect.bottom > rect.top).then_some(rect)
    }

    /// Applies the view to `img` (whose box is `bbox`): the crop and its rectangle
    /// (`None`: the whole image).
    pub fn apply(self, img: &RgbImage, bbox: Option<&BBox>) -> (RgbImage, Option<CropRect>) {
        let (w, h) = img.dimensions();
        match self.rect(bbox, w, h) {
            Some(r) => (r.crop(img), Some(r)),
            None => (img.clone(), None),
        }
    }
}

/// A reference to an image or a rectangle of it, as a string: the path, followed for a
/// crop by a W3C media fragment `#xywh=left,top,width,height` (pixels). Projection records
/// name their source images this way.
pub fn image_ref(path: &std::path::Path, rect: Option<&CropRect>) -> String {
    match rect {
        None => path.display().to_string(),
        Some(r) => format!(
            "{}#xywh={},{},{},{}",
            path.display(),
            r.left,
            r.top,
            r.width(),
            r.height()
        ),
    }
}

/// The path and crop of an [`image_ref`] string. A string without a well-formed
/// `#xywh=` fragment is a plain path.
pub fn parse_image_ref(s: &str) -> (std::path::PathBuf, Option<CropRect>) {
    let parsed = s.rsplit_once("#xywh=").and_then(|(path, frag)| {
        let v: Vec<u32> = frag
            .split(',')
            .map(str::parse)
            .collect::<std::result::Result<_, _>>()
            .ok()?;
        let [left, top, w, h] = v[..] else {
            return None;
        };
        let rect = CropRect {
            left,
            top,
            right: left.checked_add(w)?,
            bottom: top.checked_add(h)?,
        };
        (w > 0 && h > 0).then(|| (std::path::PathBuf::from(path), Some(rect)))
    });
    parsed.unwrap_or_else(|| (std::path::PathBuf::from(s), None))
}

/// Decodes the image an [`image_ref`] string names, cropped as it says (a rectangle
/// reaching outside the image is clamped to it).
pub fn load_image_ref(s: &str) -> crate::Result<RgbImage> {
    let (path, rect) = parse_image_ref(s);
    let img = crate::loader::load_rgb(&path)?;
    Ok(match rect {
        None => img,
        Some(r) => {
            let (w, h) = img.dimensions();
            let clamped = CropRect {
                left: r.left.min(w.saturating_sub(1)),
                top: r.top.min(h.saturating_sub(1)),
                right: r.right.min(w),
                bottom: r.bottom.min(h),
            };
            if clamped.right > clamped.left && clamped.bottom > clamped.top {
                clamped.crop(&img)
            } else {
                img
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bbox(x: f32, y: f32, width: f32, height: f32) -> BBox {
        BBox {
            x,
            y,
            width,
            height,
        }
    }

    fn rect(left: u32, top: u32, right: u32, bottom: u32) -> Option<CropRect> {
        Some(CropRect {
            left,
            top,
            right,
            bottom,
        })
    }

    #[test]
    fn corner_crops_by_hand() {
        // A 500×400 image with box x 100, y 50, 200 × 150: margins 20 and 15.
        let b = bbox(100.0, 50.0, 200.0, 150.0);
        let r = |v: View| v.rect(Some(&b), 500, 400);
        assert_eq!(r(View::Full), None);
        assert_eq!(r(View::BBox), rect(100, 50, 300, 200));
        assert_eq!(r(View::UpperLeft), rect(0, 0, 320, 215));
        assert_eq!(r(View::LowerLeft), rect(0, 35, 320, 400));
        assert_eq!(r(View::UpperRight), rect(80, 0, 500, 215));
        assert_eq!(r(View::LowerRight), rect(80, 35, 500, 400));
        // Near the edges the crops are clamped; margins are truncated (int(0.1 · 19) = 1).
        let b = bbox(3.0, 2.0, 19.0, 27.0);
        let r = |v: View| v.rect(Some(&b), 24, 30);
        assert_eq!(r(View::UpperLeft), rect(0, 0, 23, 30));
        assert_eq!(r(View::LowerRight), rect(2, 0, 24, 30));
        // Fractional coordinates round half to even, as Pillow's crop does.
        let b = bbox(10.5, 11.5, 20.0, 20.0);
        assert_eq!(View::BBox.rect(Some(&b), 64, 64), rect(10, 12, 30, 32));
        // Without a box every view is the whole image.
        assert_eq!(View::LowerLeft.rect(None, 64, 64), None);
    }

    #[test]
    fn protocols_choose_views_by_set() {
        let mut s = Sample {
            image_id: 1,
            path: "a.png".into(),
            class_index: 0,
            bbox: Some(bbox(1.0, 1.0, 4.0, 4.0)),
            is_train: true,
        };
        let r = Protocol::Reference;
        assert_eq!(r.views(Role::Train, &s, false), View::REFERENCE_TRAINING);
        assert_eq!(r.views(Role::Projection, &s, true), [View::BBox]);
        assert_eq!(r.views(Role::Test, &s, true), [View::Full]);
        let p = Protocol::Plain;
        assert_eq!(p.views(Role::Train, &s, false), [View::Full]);
        assert_eq!(p.views(Role::Train, &s, true), [View::BBox]);
        assert_eq!(p.views(Role::Test, &s, true), [View::BBox]);
        assert_eq!(p.views(Role::Projection, &s, true), [View::Full]);
        s.bbox = None;
        assert_eq!(r.views(Role::Train, &s, false), [View::Full]);
        assert_eq!(r.views(Role::Projection, &s, false), [View::Full]);
        assert_eq!(p.views(Role::Train, &s, true), [View::Full]);
        assert_eq!("plain".parse::<Protocol>().unwrap(), Protocol::Plain);
        assert!("cub".parse::<Protocol>().is_err());
    }

    #[test]
    fn image_refs_round_trip() {
        let path = std::path::Path::new("/d/x#1.png");
        assert_eq!(parse_image_ref(&image_ref(path, None)), (path.into(), None));
        let r = CropRect {
            left: 3,
            top: 4,
            right: 10,
            bottom: 20,
        };
        let s = image_ref(path, Some(&r));
        assert_eq!(s, "/d/x#1.png#xywh=3,4,7,16");
        assert_eq!(parse_image_ref(&s), (path.into(), Some(r)));
        for odd in [
            "/d/a.png#xywh=1,2,3",
            "/d/a.png#xywh=1,2,0,4",
            "/d/a.png#xywh=a,b,c,d",
        ] {
            assert_eq!(parse_image_ref(odd).1, None, "{odd}");
        }
    }
}
