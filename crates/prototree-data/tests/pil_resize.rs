//! Resizing and the reference protocol's crops against Pillow (fixtures written by
//! fixtures/resize/make_fixtures.py): every pixel within one grey level of Pillow's
//! `Image.resize`, and the crop boxes of the reference's `preprocess_data/cub.py` on the
//! CUB-layout fixture.

use std::path::{Path, PathBuf};

use prototree_data::transform::{resize, Filter};
use prototree_data::{load_rgb, CropRect, CubDataset, Split, View};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn json(path: &Path) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

#[test]
fn resizing_matches_pillow_within_one_grey_level() -> anyhow::Result<()> {
    let dir = fixtures().join("resize");
    let source = load_rgb(&dir.join("source.png"))?;
    let cases = json(&dir.join("cases.json"))?;
    let cases = cases.as_array().ok_or_else(|| anyhow::anyhow!("cases"))?;
    assert!(cases.len() >= 8);
    for case in cases {
        let file = case["file"].as_str().unwrap_or_default();
        let expected = load_rgb(&dir.join(file))?;
        let input = match case["crop"].as_array() {
            None => source.clone(),
            Some(b) => {
                // Pillow rounds a fractional crop box half to even.
                let v: Vec<u32> = b
                    .iter()
                    .map(|x| x.as_f64().unwrap_or(0.0).round_ties_even() as u32)
                    .collect();
                CropRect {
                    left: v[0],
                    top: v[1],
                    right: v[2],
                    bottom: v[3],
                }
                .crop(&source)
            }
        };
        let filter = match case["filter"].as_str() {
            Some("bicubic") => Filter::Bicubic,
            _ => Filter::Bilinear,
        };
        let (w, h) = (
            case["width"].as_u64().unwrap_or(0) as u32,
            case["height"].as_u64().unwrap_or(0) as u32,
        );
        let got = resize(&input, w, h, filter);
        assert_eq!(got.dimensions(), expected.dimensions(), "{file}");
        let max = got
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        println!("{file}: largest difference {max} grey levels");
        assert!(max <= 1, "{file}: largest difference {max} grey levels");
    }
    Ok(())
}

#[test]
fn corner_and_box_crops_match_the_reference_script() -> anyhow::Result<()> {
    let cub = CubDataset::open(&fixtures().join("cub-tiny"))?;
    let expected = json(&fixtures().join("resize/cub_tiny_protocol.json"))?;
    let expected = expected.as_array().ok_or_else(|| anyhow::anyhow!("rows"))?;
    let train = cub.samples(Split::Train);
    assert_eq!(expected.len(), train.len());
    let views = [
        ("bbox", View::BBox),
        ("upper_left", View::UpperLeft),
        ("lower_left", View::LowerLeft),
        ("upper_right", View::UpperRight),
        ("lower_right", View::LowerRight),
    ];
    for row in expected {
        let id = row["image_id"].as_u64().unwrap_or(0) as u32;
        let sample = train
            .iter()
            .find(|s| s.image_id == id)
            .ok_or_else(|| anyhow::anyhow!("image {id}"))?;
        let (w, h) = load_rgb(&sample.path)?.dimensions();
        assert_eq!(
            (u64::from(w), u64::from(h)),
            (
                row["width"].as_u64().unwrap_or(0),
                row["height"].as_u64().unwrap_or(0)
            )
        );
        for (name, view) in views {
            let b: Vec<u32> = row["crops"][name]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(0) as u32).collect())
                .unwrap_or_default();
            let want = CropRect {
                left: b[0],
                top: b[1],
                right: b[2],
                bottom: b[3],
            };
            assert_eq!(
                view.rect(sample.bbox.as_ref(), w, h),
                Some(want),
                "image {id} {name}"
            );
        }
    }
    // One by hand: image 3 (32 × 32, box x 9, y 15, 20 × 9; margins int(2.0) = 2 and
    // int(0.9) = 0).
    let s = train
        .iter()
        .find(|s| s.image_id == 3)
        .ok_or_else(|| anyhow::anyhow!("image 3"))?;
    let r = |v: View| {
        v.rect(s.bbox.as_ref(), 32, 32)
            .map(|r| [r.left, r.top, r.right, r.bottom])
    };
    assert_eq!(r(View::Full), None);
    assert_eq!(r(View::BBox), Some([9, 15, 29, 24]));
    assert_eq!(r(View::UpperLeft), Some([0, 0, 31, 24]));
    assert_eq!(r(View::LowerLeft), Some([0, 15, 31, 32]));
    assert_eq!(r(View::UpperRight), Some([7, 0, 32, 24]));
    assert_eq!(r(View::LowerRight), Some([7, 15, 32, 32]));
    Ok(())
}
