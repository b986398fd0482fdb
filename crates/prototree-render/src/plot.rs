//! Training curves as a PNG (`curves.png` in the run directory): loss on the left,
//! accuracies on the right, drawn with the `image` crate and an 8×8 bitmap font so that no
//! system fonts or plotting libraries are needed.

use std::path::Path;

use font8x8::legacy::BASIC_LEGACY;
use image::{Rgb, RgbImage};
use prototree_tree::io::write_atomic;
use prototree_tree::EpochStats;

/// File name of the curves in a run directory.
pub const CURVES_FILE: &str = "curves.png";

const W: u32 = 960;
const H: u32 = 400;
const PANEL_W: u32 = W / 2;
const LEFT: u32 = 56;
const RIGHT: u32 = 16;
const TOP: u32 = 36;
const BOTTOM: u32 = 40;
const INK: Rgb<u8> = Rgb([40, 40, 40]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// One curve: a label, a colour and `(x, y)` points.
struct Series {
    label: &'static str,
    colour: Rgb<u8>,
    points: Vec<(f64, f64)>,
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// Text at `(x, y)` (top-left), 8 px glyphs.
fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, c: Rgb<u8>) {
    for (i, ch) in s.chars().enumerate() {
        let glyph = BASIC_LEGACY.get(ch as usize).copied().unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 1 {
                    put(img, x + (i as i64) * 8 + col, y + row as i64, c);
                }
            }
        }
    }
}

/// A thick line from `a` to `b` (Bresenham, 2 px wide).
fn line(img: &mut RgbImage, a: (i64, i64), b: (i64, i64), c: Rgb<u8>) {
    let (mut x, mut y) = a;
    let (dx, dy) = ((b.0 - a.0).abs(), -(b.1 - a.1).abs());
    let (sx, sy) = (
        if a.0 < b.0 { 1 } else { -1 },
        if a.1 < b.1 { 1 } else { -1 },
    );
    let mut err = dx + dy;
    loop {
        put(img, x, y, c);
        put(img, x, y + 1, c);
        if x == b.0 && y == b.1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

fn label_of(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Draws one panel with its own axes at horizontal offset `x0`.
fn panel(img: &mut RgbImage, x0: u32, title: &str, series: &[Series], y_range: Option<(f64, f64)>) {
    let (px0, px1) = (i64::from(x0 + LEFT), i64::from(x0 + PANEL_W - RIGHT));
    let (py0, py1) = (i64::from(TOP), i64::from(H - BOTTOM));
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let (xmin, xmax) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut ymin, mut ymax) = y_range.unwrap_or_else(|| {
        all.iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)))
    });
    if all.is_empty() {
        return;
    }
    if ymax - ymin < 1e-9 {
        ymin -= 0.5;
        ymax += 0.5;
    }
    let xspan = (xmax - xmin).max(1.0);

    let to_px = |p: (f64, f64)| -> (i64, i64) {
        let x = px0 as f64 + (p.0 - xmin) / xspan * (px1 - px0) as f64;
        let y = py1 as f64 - (p.1 - ymin) / (ymax - ymin) * (py1 - py0) as f64;
        (x.round() as i64, y.round() as i64)
    };
    for k in 0..=4 {
        let v = ymin + (ymax - ymin) * k as f64 / 4.0;
        let (_, y) = to_px((xmin, v));
        for x in px0..=px1 {
            put(img, x, y, GRID);
        }
        let l = label_of(v);
        text(img, px0 - 6 - 8 * l.len() as i64, y - 4, &l, INK);
    }
    for x in px0..=px1 {
        put(img, x, py1, INK);
    }
    for y in py0..=py1 {
        put(img, px0, y, INK);
    }
    // Integer epoch ticks, at most about six.
    let step = ((xmax - xmin) / 5.0).ceil().max(1.0);
    let mut tick = xmin;
    while tick <= xmax + 1e-9 {
        let (x, _) = to_px((tick, ymin));
        let l = format!("{tick:.0}");
        text(img, x - 4 * l.len() as i64, py1 + 6, &l, INK);
        tick += step;
    }
    text(img, (px0 + px1) / 2 - 20, py1 + 22, "epoch", INK);
    text(img, px0, 10, title, INK);
    let mut legend_x = px0 + 8 * title.len() as i64 + 24;
    for s in series {
        for p in s.points.windows(2) {
            line(img, to_px(p[0]), to_px(p[1]), s.colour);
        }
        if s.points.len() == 1 {
            let (x, y) = to_px(s.points[0]);
            for d in -2..=2 {
                put(img, x + d, y, s.colour);
                put(img, x, y + d, s.colour);
            }
        }
        for dx in 0..14 {
            put(img, legend_x + dx, 13, s.colour);
            put(img, legend_x + dx, 14, s.colour);
        }
        text(img, legend_x + 18, 10, s.label, INK);
        legend_x += 18 + 8 * s.label.len() as i64 + 16;
    }
}

/// Renders the curves of `history` (PNG bytes).
pub fn training_curves_png(history: &[EpochStats]) -> Vec<u8> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let epoch = |s: &EpochStats| s.epoch as f64;
    let loss = vec![Series {
        label: "train loss",
        colour: Rgb([200, 60, 40]),
        points: history.iter().map(|s| (epoch(s), s.train_loss)).collect(),
    }];
    panel(&mut img, 0, "loss (NLL)", &loss, None);
    let mut acc = vec![Series {
        label: "train",
        colour: Rgb([40, 110, 200]),
        points: history
            .iter()
            .map(|s| (epoch(s), s.train_accuracy))
            .collect(),
    }];
    let test: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|s| s.eval.as_ref().map(|e| (epoch(s), e.accuracy_soft)))
        .collect();
    if !test.is_empty() {
        acc.push(Series {
            label: "test (soft)",
            colour: Rgb([30, 150, 70]),
            points: test,
        });
    }
    panel(&mut img, PANEL_W, "accuracy", &acc, Some((0.0, 1.0)));
    crate::visualize::png_bytes(&img)
}

/// Writes `curves.png` into `dir` (atomically).
pub fn write_training_curves(dir: &Path, history: &[EpochStats]) -> prototree_tree::Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    write_atomic(&dir.join(CURVES_FILE), &training_curves_png(history))
}
