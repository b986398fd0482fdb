//! Layout helpers of the generic (plain tensor op) paths on channels-last tensors.

use candle_core::Tensor;

/// Rows `start, start + stride, …` (`count` of them) of dimension `dim`.
pub(crate) fn strided(
    x: &Tensor,
    dim: usize,
    start: usize,
    count: usize,
    stride: usize,
) -> candle_core::Result<Tensor> {
    if stride == 1 {
        return x.narrow(dim, start, count);
    }
    // Take count·stride rows (padding the end with zeros if the input is too short),
    // split them into (count, stride) and keep the first of each group.
    let avail = x.dim(dim)? - start;
    let want = count * stride;
    let slice = if avail >= want {
        x.narrow(dim, start, want)?
    } else {
        x.narrow(dim, start, avail)?
            .pad_with_zeros(dim, 0, want - avail)?
    };
    let mut dims = slice.dims().to_vec();
    dims[dim] = count;
    dims.insert(dim + 1, stride);
    slice.reshape(dims)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)
}

/// Zero padding of a channels-last input: `(top, bottom)` rows and `(left, right)` columns.
pub fn pad_nhwc(
    x: &Tensor,
    rows: (usize, usize),
    cols: (usize, usize),
) -> candle_core::Result<Tensor> {
    let mut x = x.clone();
    if rows.0 + rows.1 > 0 {
        x = x.pad_with_zeros(1, rows.0, rows.1)?;
    }
    if cols.0 + cols.1 > 0 {
        x = x.pad_with_zeros(2, cols.0, cols.1)?;
    }
    Ok(x)
}
