//! The one window geometry of the sliding-window kernels (convolution, depthwise
//! convolution, max-pooling) on channels-last tensors: sizes, stride, padding and the
//! input pixels each output reads.

/// Geometry of a `kh × kw` window sliding with `stride` over a `(b, h, w, c)` input padded
/// by `pad_top` rows and `pad_left` columns (the bottom / right padding follows from the
/// output size `ho × wo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Window {
    /// The window of `kernel = (kh, kw)` over an input of `dims = (b, h, w, c)` with
    /// `padding = (top, left)` and output size `out = (ho, wo)`; a stride of 0 counts as 1.
    pub fn new(
        (b, h, w, c): (usize, usize, usize, usize),
        (kh, kw): (usize, usize),
        stride: usize,
        (pad_top, pad_left): (usize, usize),
        (ho, wo): (usize, usize),
    ) -> Self {
        Self {
            b,
            h,
            w,
            c,
            kh,
            kw,
            stride: stride.max(1),
            pad_top,
            pad_left,
            ho,
            wo,
        }
    }

    /// The window of `kernel = (kh, kw)` over an input of `dims = (b, h, w, c)` zero-padded
    /// by `rows = (top, bottom)` and `cols = (left, right)`, its output size following
    /// from [`padded_out_size`].
    pub fn padded(
        dims: (usize, usize, usize, usize),
        (kh, kw): (usize, usize),
        stride: usize,
        rows: (usize, usize),
        cols: (usize, usize),
    ) -> Self {
        let out = (
            padded_out_size(dims.1, kh, stride, rows),
            padded_out_size(dims.2, kw, stride, cols),
        );
        Self::new(dims, (kh, kw), stride, (rows.0, cols.0), out)
    }

    /// Output pixels over the batch, `b·ho·wo`.
    pub fn rows(&self) -> usize {
        self.b * self.ho * self.wo
    }

    /// A 1×1, stride-1, unpadded window: every output pixel reads its own input pixel.
    pub fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.ho == self.h && self.wo == self.w
    }

    /// Image, output row and output column of output pixel `r` (over the batch).
    #[inline]
    pub fn split(&self, r: usize) -> (usize, usize, usize) {
        (
            r / (self.ho * self.wo),
            (r / self.wo) % self.ho,
            r % self.wo,
        )
    }

    /// Input row read by output row `oy` at tap row `ky`, if inside.
    #[inline]
    pub fn source_row(&self, oy: usize, ky: usize) -> Option<usize> {
        let iy = (oy * self.stride + ky).checked_sub(self.pad_top)?;
        (iy < self.h).then_some(iy)
    }

    /// Input pixel `(iy, ix)` read by output `(oy, ox)` at tap `(ky, kx)`, if inside.
    #[inline]
    pub fn source(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let iy = self.source_row(oy, ky)?;
        let ix = (ox * self.stride + kx).checked_sub(self.pad_left)?;
        (ix < self.w).then_some((iy, ix))
    }

    /// Output columns `ox` whose tap column `kx` reads inside the input, as a range, and
    /// the input column of the first of them.
    #[inline]
    pub fn valid_columns(&self, kx: usize) -> (std::ops::Range<usize>, usize) {
        let s = self.stride;
        // ix = ox·s + kx − pad_left must satisfy 0 ≤ ix < w.
        let first = self.pad_left.saturating_sub(kx).div_ceil(s);
        let end = (self.w + self.pad_left)
            .saturating_sub(kx)
            .div_ceil(s)
            .min(self.wo);
        let first = first.min(end);
        (first..end, (first * s + kx).saturating_sub(self.pad_left))
    }

    /// Input rows `lo..hi` inside the window of output row `oy`.
    #[inline]
    pub fn span_rows(&self, oy: usize) -> (usize, usize) {
        span(oy * self.stride, self.kh, self.pad_top, self.h)
    }

    /// Input columns `lo..hi` inside the window of output column `ox`.
    #[inline]
    pub fn span_cols(&self, ox: usize) -> (usize, usize) {
        span(ox * self.stride, self.kw, self.pad_left, self.w)
    }
}

/// `lo..hi` of a window starting at padded position `start`, `k` long, clipped to `0..side`.
#[inline]
fn span(start: usize, k: usize, pad: usize, side: usize) -> (usize, usize) {
    let lo = start.saturating_sub(pad);
    let hi = (start + k).saturating_sub(pad).min(side);
    (lo, hi)
}

/// Output side of a window over `input` with `(before, after)` padding.
pub fn padded_out_size(input: usize, kernel: usize, stride: usize, pad: (usize, usize)) -> usize {
    (input + pad.0 + pad.1).saturating_sub(kernel) / stride.max(1) + 1
}

/// Output side of a convolution with the same `padding` on both sides.
pub fn conv_out_size(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    padded_out_size(input, kernel, stride, (padding, padding))
}

/// TensorFlow "SAME" padding `(before, after)` of one side for `kernel` and `stride`.
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let stride = stride.max(1);
    let out = input.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_spans_agree_by_hand() {
        // 3×3, stride 2, padding 1 over 5×4: ho = 3, wo = 2.
        let win = Window::new((1, 5, 4, 2), (3, 3), 2, (1, 1), (3, 2));
        assert_eq!(conv_out_size(5, 3, 2, 1), 3);
        assert_eq!(conv_out_size(4, 3, 2, 1), 2);
        assert_eq!(win.source(0, 0, 0, 0), None); // the padded corner
        assert_eq!(win.source(0, 0, 1, 1), Some((0, 0)));
        assert_eq!(win.source(2, 1, 2, 2), None); // row 5: past the bottom
        assert_eq!(win.source(2, 1, 1, 1), Some((4, 2)));
        assert_eq!(win.span_rows(0), (0, 2));
        assert_eq!(win.span_rows(2), (3, 5));
        assert_eq!(win.span_cols(1), (1, 4));
        assert_eq!(win.valid_columns(0), (1..2, 1));
        assert_eq!(win.split(5), (0, 2, 1));
        assert_eq!(same_padding(7, 3, 2), (1, 1));
        assert_eq!(same_padding(8, 3, 2), (0, 1));
    }
}
