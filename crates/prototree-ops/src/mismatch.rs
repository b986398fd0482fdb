//! The error of an op handed two tensors whose shapes do not fit together.

use candle_core::Tensor;

/// candle's shape-mismatch error of `op` for the operands `lhs` and `rhs`.
pub(crate) fn shape_mismatch(lhs: &Tensor, rhs: &Tensor, op: &'static str) -> candle_core::Error {
    candle_core::Error::ShapeMismatchBinaryOp {
        lhs: lhs.shape().clone(),
        rhs: rhs.shape().clone(),
        op,
    }
}
