//! The one matrix-product wrapper of the fused kernels: `gemm` (the kernel candle-core
//! 0.11.1 itself uses, same version) on bounds-checked slice views.

/// A read-only row-major or transposed view of a matrix in a slice: element `(r, c)` is
/// `data[r·rs + c·cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatView<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a> MatView<'a> {
    /// A row-major matrix with rows of `cols` elements.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with rows of `cols` elements.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }

    /// Whether every element of a `rows × cols` matrix lies inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `dst (m, n) [+]= lhs (m, k) · rhs (k, n)` with `dst` row-major; `dims = (m, n, k)`.
///
/// `accumulate`: add to `dst` instead of overwriting it. `parallel`: let `gemm` split the
/// product over the rayon pool (one large product); otherwise single-threaded (callers
/// that parallelise over blocks).
pub(crate) fn gemm_into(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: MatView<'_>,
    rhs: MatView<'_>,
    accumulate: bool,
    parallel: bool,
) -> candle_core::Result<()> {
    if dst.len() < m * n || !lhs.fits(m, k) || !rhs.fits(k, n) {
        candle_core::bail!("matrix product: buffers too small for ({m}, {k}) x ({k}, {n})");
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return Ok(());
    }
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the bounds checks above keep every element the strides address inside the
    // three slices, and `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_a_plain_triple_loop() -> candle_core::Result<()> {
        let (m, n, k) = (5, 3, 4);
        let a: Vec<f32> = (0..m * k).map(|v| v as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|v| 1.0 - v as f32 * 0.25).collect();
        let mut want = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
            }
        }
        let (a_rows, b_rows) = (MatView::rows(&a, k), MatView::rows(&b, n));
        let mut got = vec![7f32; m * n];
        gemm_into(&mut got, (m, n, k), a_rows, b_rows, false, false)?;
        assert_eq!(got, want);
        // Accumulating adds on top; a transposed view reads the same matrix.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let bt_view = MatView::transposed(&bt, k);
        gemm_into(&mut got, (m, n, k), a_rows, bt_view, true, true)?;
        for (g, w) in got.iter().zip(&want) {
            assert!((g - 2.0 * w).abs() < 1e-4);
        }
        assert!(gemm_into(&mut got, (m, n, k + 1), a_rows, b_rows, false, false).is_err());
        Ok(())
    }
}
