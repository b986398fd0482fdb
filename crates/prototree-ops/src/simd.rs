//! The SIMD scaffolding of the fused kernels: one runtime AVX2 dispatch
//! ([`avx2_dispatch!`]) and the vector kernels several ops share (dot products, the
//! sparse-gradient update). Portable code written so the compiler vectorises it; compiled
//! a second time with AVX2 enabled and chosen at run time, with the same summation order,
//! hence the same values, either way.

/// Defines `fn $name(args) -> ret` calling `$portable(args)`, compiled once more with AVX2
/// and chosen at run time where the CPU has it.
macro_rules! avx2_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident = $portable:ident ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?;) => {
        $(#[$meta])*
        #[inline]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn with_avx2($($arg: $ty),*) $(-> $ret)? {
                    $portable($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { with_avx2($($arg),*) };
                }
            }
            $portable($($arg),*)
        }
    };
}
pub(crate) use avx2_dispatch;

/// Lanes of the partial sums in [`dot`]: two AVX registers or four SSE registers, so the
/// adds of one lane do not wait on each other.
pub(crate) const DOT_LANES: usize = 16;

#[inline(always)]
pub(crate) fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; DOT_LANES];
    let (a16, b16) = (a.chunks_exact(DOT_LANES), b.chunks_exact(DOT_LANES));
    let tail: f32 = a16
        .remainder()
        .iter()
        .zip(b16.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a16.zip(b16) {
        for k in 0..DOT_LANES {
            acc[k] += x[k] * y[k];
        }
    }
    reduce_lanes(acc) + tail
}

#[inline(always)]
fn reduce_lanes(mut acc: [f32; DOT_LANES]) -> f32 {
    let mut width = DOT_LANES / 2;
    while width > 0 {
        for k in 0..width {
            acc[k] += acc[k + width];
        }
        width /= 2;
    }
    acc[0]
}

#[inline(always)]
fn dots_lanes(rows: &[f32], d: usize, p: &[f32], out: &mut [f32]) {
    const R: usize = 4;
    let p = &p[..d];
    let full = d / DOT_LANES * DOT_LANES;
    let mut groups = rows.chunks_exact(R * d.max(1));
    let mut outs = out.chunks_exact_mut(R);
    for (group, o) in (&mut groups).zip(&mut outs) {
        // Four rows at once: the prototype chunk is loaded once, eight independent sums.
        let (r0, rest) = group.split_at(d);
        let (r1, rest) = rest.split_at(d);
        let (r2, r3) = rest.split_at(d);
        let mut acc = [[0f32; DOT_LANES]; R];
        let chunks = p
            .chunks_exact(DOT_LANES)
            .zip(r0.chunks_exact(DOT_LANES))
            .zip(r1.chunks_exact(DOT_LANES))
            .zip(r2.chunks_exact(DOT_LANES))
            .zip(r3.chunks_exact(DOT_LANES));
        for ((((pc, z0), z1), z2), z3) in chunks {
            for l in 0..DOT_LANES {
                acc[0][l] += z0[l] * pc[l];
                acc[1][l] += z1[l] * pc[l];
                acc[2][l] += z2[l] * pc[l];
                acc[3][l] += z3[l] * pc[l];
            }
        }
        for (k, r) in [r0, r1, r2, r3].into_iter().enumerate() {
            let tail: f32 = r[full..].iter().zip(&p[full..]).map(|(x, y)| x * y).sum();
            o[k] = reduce_lanes(acc[k]) + tail;
        }
    }
    let rest = groups.remainder();
    for (row, o) in rest.chunks_exact(d.max(1)).zip(outs.into_remainder()) {
        *o = dot_lanes(row, p);
    }
}

#[inline(always)]
fn axpy_diff_lanes(g: &mut [f32], c: f32, a: &[f32], b: &[f32]) {
    for ((g, &x), &y) in g.iter_mut().zip(a).zip(b) {
        *g += c * (x - y);
    }
}

avx2_dispatch! {
    /// `Σ a_i b_i` over the common length, with [`DOT_LANES`] independent partial sums
    /// (vectorised; the same summation order, hence the same value, with or without AVX2).
    pub(crate) fn dot = dot_lanes(a: &[f32], b: &[f32]) -> f32;
}

avx2_dispatch! {
    /// `g += c · (a − b)` elementwise (the sparse backward's only arithmetic), with AVX2
    /// where the CPU has it (same arithmetic either way).
    pub(crate) fn axpy_diff = axpy_diff_lanes(g: &mut [f32], c: f32, a: &[f32], b: &[f32]);
}

avx2_dispatch! {
    /// [`dots_against`] on rows already cut to `out.len()`.
    fn dots_exact = dots_lanes(rows: &[f32], d: usize, p: &[f32], out: &mut [f32]);
}

/// `out[i] = dot(row_i, p)` for the `out.len()` rows of length `d` in `rows` (four rows
/// at a time; each value is exactly [`dot`]'s).
pub(crate) fn dots_against(rows: &[f32], d: usize, p: &[f32], out: &mut [f32]) {
    if d == 0 {
        out.fill(0.0);
        return;
    }
    let n = out.len().min(rows.len() / d);
    let (rows, out) = (&rows[..n * d], &mut out[..n]);
    dots_exact(rows, d, p, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_against_equals_dot_row_by_row() {
        for (n, d) in [(0usize, 8usize), (3, 16), (7, 37), (49, 256), (5, 0)] {
            let rows: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.13).sin()).collect();
            let p: Vec<f32> = (0..d).map(|i| (i as f32 * 0.29).cos()).collect();
            let mut out = vec![f32::NAN; n];
            dots_against(&rows, d, &p, &mut out);
            for (i, o) in out.iter().enumerate() {
                let want = if d == 0 {
                    0.0
                } else {
                    dot(&rows[i * d..(i + 1) * d], &p)
                };
                assert_eq!(o.to_bits(), want.to_bits(), "n {n} d {d} row {i}");
            }
        }
    }

    #[test]
    fn dot_matches_a_plain_sum() {
        for len in [0usize, 1, 15, 16, 17, 256, 259] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
            assert!((f64::from(dot(&a, &b)) - plain).abs() < 1e-4, "len {len}");
        }
    }
}
