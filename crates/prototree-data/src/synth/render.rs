//! Drawing one synthetic bird: shapes in a bird-local frame, inverse-mapped per pixel with
//! 2×2 supersampling for the colour and the centre sample for the part label mask.

use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::Rng;

use crate::color::hsv_to_rgb;

use super::parts::{PART_BREAST, PART_CREST, PART_EYE, PART_LEGS, PART_TAIL, PART_WING};

/// Mask label of the background.
pub const LABEL_BACKGROUND: u8 = 0;
/// Mask label of the body (and head).
pub const LABEL_BODY: u8 = 1;
/// Mask label of part `id` (1-based) is `id + 1`.
pub fn part_label(part_id: u32) -> u8 {
    (part_id + 1) as u8
}

/// A filled ellipse in image pixels: centre, radii, angle (radians), colour.
pub type Ellipse = ((f32, f32), (f32, f32), f32, [f32; 3]);
/// A thick line segment in image pixels: end points, half-width, colour.
pub type Segment = ((f32, f32), (f32, f32), f32, [f32; 3]);

/// Random appearance of one image: everything except the class's part variants, drawn
/// from the same distribution for every class.
#[derive(Debug, Clone)]
pub struct Pose {
    /// Bird centre in pixels.
    pub center: (f32, f32),
    /// Pixels per local unit.
    pub scale: f32,
    /// Rotation in radians.
    pub angle: f32,
    /// Facing left instead of right.
    pub flipped: bool,
    /// Body colour (muted).
    pub body: [f32; 3],
    /// Background gradient colours (muted).
    pub background: [[f32; 3]; 2],
    /// Clutter ellipses: centre, radii, angle, colour.
    pub clutter: Vec<Ellipse>,
    /// Twigs: two end points, half-width, colour.
    pub twigs: Vec<Segment>,
    /// Occluders in front of the bird: centre, radii, angle, colour (image pixels).
    pub occluders: Vec<Ellipse>,
}

fn muted(rng: &mut impl Rng, s_max: f32) -> [f32; 3] {
    hsv_to_rgb([
        rng.random::<f32>(),
        rng.random_range(0.1..s_max),
        rng.random_range(0.35..0.85),
    ])
}

impl Pose {
    /// A random pose for an image of side `size`, rotated by at most `max_rotation`
    /// radians either way.
    pub fn random(rng: &mut impl Rng, size: f32, max_rotation: f32) -> Self {
        let scale = size * rng.random_range(0.72..0.92);
        let margin_x = (size * 0.5 - 0.52 * scale).max(0.0);
        let margin_y = (size * 0.5 - 0.30 * scale).max(0.0);
        let center = (
            size * 0.5 + rng.random_range(-1.0..=1.0) * margin_x,
            size * 0.5 + rng.random_range(-1.0..=1.0) * margin_y,
        );
        let clutter = (0..rng.random_range(4..9))
            .map(|_| {
                (
                    (rng.random::<f32>() * size, rng.random::<f32>() * size),
                    (
                        rng.random_range(0.04..0.2) * size,
                        rng.random_range(0.03..0.12) * size,
                    ),
                    rng.random::<f32>() * std::f32::consts::PI,
                    muted(rng, 0.35),
                )
            })
            .collect();
        let twigs = (0..rng.random_range(1..4))
            .map(|_| {
                (
                    (rng.random::<f32>() * size, rng.random::<f32>() * size),
                    (rng.random::<f32>() * size, rng.random::<f32>() * size),
                    rng.random_range(0.008..0.02) * size,
                    hsv_to_rgb([
                        rng.random_range(0.05..0.12),
                        rng.random_range(0.3..0.6),
                        rng.random_range(0.2..0.45),
                    ]),
                )
            })
            .collect();
        Self {
            center,
            scale,
            angle: if max_rotation > 0.0 {
                rng.random_range(-max_rotation..max_rotation)
            } else {
                0.0
            },
            flipped: rng.random::<bool>(),
            body: muted(rng, 0.45),
            background: [muted(rng, 0.3), muted(rng, 0.3)],
            clutter,
            twigs,
            occluders: Vec::new(),
        }
    }

    /// Adds an occluder over the bird-local point `at` (a part's centre): a muted blob of
    /// 0.08–0.16 bird lengths, shifted by up to 0.05.
    pub fn add_occluder(&mut self, rng: &mut impl Rng, at: (f32, f32)) {
        let jitter = (rng.random_range(-0.05..0.05), rng.random_range(-0.05..0.05));
        let centre = self.to_image(at.0 + jitter.0, at.1 + jitter.1);
        let radii = (
            rng.random_range(0.08..0.16) * self.scale,
            rng.random_range(0.08..0.16) * self.scale,
        );
        let angle = rng.random::<f32>() * std::f32::consts::PI;
        self.occluders
            .push((centre, radii, angle, muted(rng, 0.35)));
    }

    /// The occluder colour at image point `p`, if one covers it.
    fn occluder_at(&self, p: (f32, f32)) -> Option<[f32; 3]> {
        self.occluders
            .iter()
            .rev()
            .find(|(c, r, a, _)| in_rotated_ellipse(p, *c, *r, *a))
            .map(|o| o.3)
    }

    /// Whether an occluder covers image point `p`.
    pub fn occluded(&self, p: (f32, f32)) -> bool {
        self.occluder_at(p).is_some()
    }

    /// Image pixel → bird-local coordinates (bird facing +x, y down).
    pub fn to_local(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (
            (x - self.center.0) / self.scale,
            (y - self.center.1) / self.scale,
        );
        let (s, c) = self.angle.sin_cos();
        let (lx, ly) = (c * dx + s * dy, -s * dx + c * dy);
        if self.flipped {
            (-lx, ly)
        } else {
            (lx, ly)
        }
    }

    /// Bird-local → image pixel coordinates.
    pub fn to_image(&self, lx: f32, ly: f32) -> (f32, f32) {
        let lx = if self.flipped { -lx } else { lx };
        let (s, c) = self.angle.sin_cos();
        let (dx, dy) = (c * lx - s * ly, s * lx + c * ly);
        (
            self.center.0 + dx * self.scale,
            self.center.1 + dy * self.scale,
        )
    }
}

fn in_ellipse(p: (f32, f32), c: (f32, f32), r: (f32, f32)) -> bool {
    let (dx, dy) = ((p.0 - c.0) / r.0, (p.1 - c.1) / r.1);
    dx * dx + dy * dy <= 1.0
}

fn in_rotated_ellipse(p: (f32, f32), c: (f32, f32), r: (f32, f32), a: f32) -> bool {
    let (s, co) = a.sin_cos();
    let (dx, dy) = (p.0 - c.0, p.1 - c.1);
    in_ellipse((co * dx + s * dy, -s * dx + co * dy), (0.0, 0.0), r)
}

fn in_polygon(p: (f32, f32), poly: &[(f32, f32)]) -> bool {
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[j]);
        if (a.1 > p.1) != (b.1 > p.1) && p.0 < (b.0 - a.0) * (p.1 - a.1) / (b.1 - a.1) + a.0 {
            inside = !inside;
        }
        j = i;
    }
    inside
}

fn near_segment(p: (f32, f32), a: (f32, f32), b: (f32, f32), half_width: f32) -> bool {
    let (vx, vy) = (b.0 - a.0, b.1 - a.1);
    let len2 = vx * vx + vy * vy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * vx + (p.1 - a.1) * vy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (qx, qy) = (a.0 + t * vx - p.0, a.1 + t * vy - p.1);
    qx * qx + qy * qy <= half_width * half_width
}

/// Centre of the breast patch (bird-local).
pub(super) const BREAST_CENTRE: (f32, f32) = (0.13, 0.075);

/// Part colours: fixed per variant, saturated, never a body colour.
const CREST_COLOURS: [[f32; 3]; 3] = [[0.0; 3], [0.88, 0.1, 0.1], [0.15, 0.3, 0.95]];
const BEAK_COLOURS: [[f32; 3]; 3] = [[0.98, 0.85, 0.1], [0.98, 0.5, 0.05], [0.08, 0.08, 0.08]];
const EYE_RING_COLOURS: [[f32; 3]; 3] = [[0.0; 3], [1.0, 1.0, 1.0], [0.1, 0.9, 0.9]];
const WING_BAR_COLOURS: [[f32; 3]; 3] = [[0.0; 3], [1.0, 1.0, 1.0], [0.9, 0.15, 0.85]];
const TAIL_COLOURS: [[f32; 3]; 3] = [[0.1, 0.6, 0.2], [0.12, 0.12, 0.12], [0.9, 0.35, 0.15]];
const BREAST_COLOURS: [[f32; 3]; 3] = [[0.0; 3], [0.95, 0.6, 0.15], [0.97, 0.97, 0.97]];
const LEG_COLOURS: [[f32; 3]; 3] = [[0.55, 0.55, 0.55], [0.95, 0.55, 0.7], [0.08, 0.08, 0.08]];

/// The legs of variant `k`: two segments below the body (top, bottom), front leg first.
pub(super) fn legs(k: usize) -> [((f32, f32), (f32, f32)); 2] {
    let length = if k == 0 { 0.09 } else { 0.16 };
    [
        ((0.03, 0.12), (0.04, 0.12 + length)),
        ((-0.06, 0.12), (-0.05, 0.12 + length)),
    ]
}

/// Half-width of a leg, in bird lengths.
const LEG_HALF_WIDTH: f32 = 0.018;

/// Colour and label of the bird at a local point, or `None` off the bird. `v` holds the
/// variant of each part the birds have (five, six with the breast, seven with the legs).
fn bird_at(p: (f32, f32), v: &[usize], body: [f32; 3]) -> Option<([f32; 3], u8)> {
    let label = |id: u32| part_label(id);
    // The five parts every bird has (variants 0..3).
    let variant = |part: usize| v.get(part).copied().unwrap_or(0).min(2);
    // Top to bottom: eye, beak, crest, head, wing bars, wing, breast, body, legs, tail.
    if in_ellipse(p, (0.25, -0.15), (0.022, 0.022)) {
        return Some(([0.02; 3], label(PART_EYE)));
    }
    if variant(2) > 0 && in_ellipse(p, (0.25, -0.15), (0.048, 0.048)) {
        return Some((EYE_RING_COLOURS[variant(2)], label(PART_EYE)));
    }
    let beak: &[(f32, f32)] = match variant(1) {
        0 => &[(0.30, -0.17), (0.41, -0.13), (0.30, -0.09)],
        1 => &[(0.30, -0.155), (0.52, -0.125), (0.30, -0.10)],
        _ => &[
            (0.30, -0.18),
            (0.42, -0.16),
            (0.44, -0.07),
            (0.39, -0.11),
            (0.30, -0.09),
        ],
    };
    if in_polygon(p, beak) {
        return Some((BEAK_COLOURS[variant(1)], label(super::parts::PART_BEAK)));
    }
    match variant(0) {
        1 => {
            for (x, tip) in [
                (0.14f32, (0.10f32, -0.33f32)),
                (0.20, (0.19, -0.36)),
                (0.26, (0.29, -0.33)),
            ] {
                if in_polygon(p, &[(x - 0.04, -0.19), tip, (x + 0.04, -0.19)]) {
                    return Some((CREST_COLOURS[1], label(PART_CREST)));
                }
            }
        }
        2 if in_ellipse(p, (0.19, -0.25), (0.075, 0.06)) => {
            return Some((CREST_COLOURS[2], label(PART_CREST)));
        }
        _ => {}
    }
    if in_ellipse(p, (0.22, -0.13), (0.105, 0.105)) {
        return Some((body, LABEL_BODY));
    }
    if in_ellipse(p, (-0.03, -0.01), (0.16, 0.085)) {
        let bar = match variant(3) {
            1 => (p.0 + 0.03).abs() < 0.035,
            2 => ((p.0 + 0.09).abs() < 0.018) || ((p.0 - 0.03).abs() < 0.018),
            _ => false,
        };
        if bar {
            return Some((WING_BAR_COLOURS[variant(3)], label(PART_WING)));
        }
        let dark = [body[0] * 0.6, body[1] * 0.6, body[2] * 0.6];
        return Some((dark, label(PART_WING)));
    }
    if let Some(&k @ (1 | 2)) = v.get(5) {
        if in_ellipse(p, BREAST_CENTRE, (0.085, 0.055)) {
            return Some((BREAST_COLOURS[k], label(PART_BREAST)));
        }
    }
    if in_ellipse(p, (0.0, 0.0), (0.27, 0.155)) {
        return Some((body, LABEL_BODY));
    }
    if let Some(&k) = v.get(6) {
        if legs(k.min(2))
            .iter()
            .any(|&(a, b)| near_segment(p, a, b, LEG_HALF_WIDTH))
        {
            return Some((LEG_COLOURS[k.min(2)], label(PART_LEGS)));
        }
    }
    let tail: &[(f32, f32)] = match variant(4) {
        0 => &[(-0.22, -0.03), (-0.47, -0.13), (-0.47, 0.11), (-0.22, 0.03)],
        1 => &[
            (-0.22, -0.03),
            (-0.50, -0.12),
            (-0.40, 0.0),
            (-0.50, 0.11),
            (-0.22, 0.03),
        ],
        _ => &[(-0.22, -0.035), (-0.58, -0.01), (-0.22, 0.035)],
    };
    if in_polygon(p, tail) {
        return Some((TAIL_COLOURS[variant(4)], label(PART_TAIL)));
    }
    None
}

fn background_at(pose: &Pose, x: f32, y: f32, size: f32) -> [f32; 3] {
    for &(a, b, w, c) in &pose.twigs {
        if near_segment((x, y), a, b, w) {
            return c;
        }
    }
    for &(c, r, a, col) in pose.clutter.iter().rev() {
        if in_rotated_ellipse((x, y), c, r, a) {
            return col;
        }
    }
    let t = (y / size).clamp(0.0, 1.0);
    let [a, b] = pose.background;
    [
        a[0] * (1.0 - t) + b[0] * t,
        a[1] * (1.0 - t) + b[1] * t,
        a[2] * (1.0 - t) + b[2] * t,
    ]
}

/// Renders the image and its label mask.
pub fn render(size: u32, pose: &Pose, v: &[usize], rng: &mut impl Rng) -> (RgbImage, GrayImage) {
    let s = size as f32;
    let mut img = RgbImage::new(size, size);
    let mut mask = GrayImage::new(size, size);
    let offsets = [(0.25f32, 0.25f32), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)];
    let brightness = rng.random_range(0.85..1.15f32);
    for y in 0..size {
        for x in 0..size {
            let mut acc = [0f32; 3];
            for (ox, oy) in offsets {
                let (px, py) = (x as f32 + ox, y as f32 + oy);
                let c = match (
                    pose.occluder_at((px, py)),
                    bird_at(pose.to_local(px, py), v, pose.body),
                ) {
                    (Some(c), _) => c,
                    (None, Some((c, _))) => c,
                    (None, None) => background_at(pose, px, py, s),
                };
                for i in 0..3 {
                    acc[i] += c[i] / 4.0;
                }
            }
            let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
            let label = if pose.occluded((cx, cy)) {
                LABEL_BACKGROUND
            } else {
                bird_at(pose.to_local(cx, cy), v, pose.body)
                    .map(|(_, l)| l)
                    .unwrap_or(LABEL_BACKGROUND)
            };
            let noise = rng.random_range(-0.04..0.04f32);
            let px =
                acc.map(|c| ((c * brightness + noise) * 255.0).round().clamp(0.0, 255.0) as u8);
            img.put_pixel(x, y, Rgb(px));
            mask.put_pixel(x, y, Luma([label]));
        }
    }
    (img, mask)
}
