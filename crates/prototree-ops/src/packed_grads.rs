//! The backward of a fused `(input, weight)` CPU op whose gradient kernel writes both
//! gradients into one buffer, `[d input | d weight]`, computing only those asked for.

use candle_core::{CpuStorage, CustomOp3, Shape, Tensor};

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

/// A zeroed packed gradient buffer, `[dx (nx elements, if want_dx) | dw (nw, if want_dw)]`.
pub(crate) fn packed_buffer(
    (want_dx, nx): (bool, usize),
    (want_dw, nw): (bool, usize),
) -> Vec<f32> {
    vec![0f32; if want_dx { nx } else { 0 } + if want_dw { nw } else { 0 }]
}

/// The backward kernel's tasks of `per` whole images each, over `b` images of `img`
/// input-gradient elements: each task's first image and its part of `dx`, or `None` for
/// that part when the input gradient is not wanted. A task scatters only into its own
/// images, so tasks never write the same input pixel.
pub(crate) fn image_tasks(
    dx: Option<&mut [f32]>,
    b: usize,
    img: usize,
    per: usize,
) -> Vec<(usize, Option<&mut [f32]>)> {
    match dx {
        Some(dx) => dx
            .chunks_mut((per * img).max(1))
            .enumerate()
            .map(|(t, chunk)| (t * per, Some(chunk)))
            .collect(),
        None => (0..b.div_ceil(per)).map(|t| (t * per, None)).collect(),
    }
}

/// A packed gradient buffer as the backward op's 1-D output.
pub(crate) fn packed_output(out: Vec<f32>) -> (CpuStorage, Shape) {
    let len = out.len();
    (CpuStorage::F32(out), Shape::from(len))
}

/// The backward op of a fused `(input, weight)` op over the geometry `g`:
/// `(x, weight, dy)` → `[dx (if dx) | dweight (if dw)]`, one 1-D tensor.
pub(crate) struct PackedBackward<G> {
    pub g: G,
    pub dx: bool,
    pub dw: bool,
}

/// Writes the `bwd` of a fused `(input, weight)` forward op whose field `.0` is its
/// geometry: the gradients come from [`input_and_weight_grads`] with a
/// [`PackedBackward`] over that geometry.
macro_rules! packed_bwd {
    ($self:ident) => {
        fn bwd(
            &$self,
            x: &candle_core::Tensor,
            weight: &candle_core::Tensor,
            _res: &candle_core::Tensor,
            dy: &candle_core::Tensor,
        ) -> candle_core::Result<(Option<candle_core::Tensor>, Option<candle_core::Tensor>)> {
            $crate::packed_grads::input_and_weight_grads(x, weight, dy, |dx, dw| {
                $crate::packed_grads::PackedBackward {
                    g: $self.0,
                    dx,
                    dw,
                }
            })
        }
    };
}
pub(crate) use packed_bwd;
