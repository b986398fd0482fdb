//! The backward of a fused `(input, weight)` CPU op whose gradient kernel writes both
//! gradients into one buffer, `[d input | d weight]`, computing only those asked for.

use candle_core::{CustomOp3, Tensor};

/// Runs `make_op(need_dx, need_dw)` on `(x, weight, dy)` — a kernel writing
/// `[dx (if need_dx) | dweight (if need_dw)]` as one 1-D tensor — and splits the result
/// into the two gradients, shaped as `x` and `weight`. A gradient is asked for only when
/// its tensor is tracked (a variable, or computed from one); neither: no kernel runs.
pub(crate) fn input_and_weight_grads<C: CustomOp3>(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    make_op: impl FnOnce(bool, bool) -> C,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
    let (need_dx, need_dw) = (x.track_op(), weight.track_op());
    if !need_dx && !need_dw {
        return Ok((None, None));
    }
    let packed = x.apply_op3_no_bwd(weight, &dy.contiguous()?, &make_op(need_dx, need_dw))?;
    let nx = if need_dx { x.elem_count() } else { 0 };
    let dx = if need_dx {
        Some(packed.narrow(0, 0, nx)?.reshape(x.shape())?)
    } else {
        None
    };
    let dw = if need_dw {
        Some(
            packed
                .narrow(0, nx, weight.elem_count())?
                .reshape(weight.shape())?,
        )
    } else {
        None
    };
    Ok((dx, dw))
}
