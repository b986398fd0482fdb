//! `relu(a + b)` for the CPU in one pass, as a candle custom op: the residual join of a
//! ResNet block. The backward masks the gradient with the saved output, so neither the
//! sum nor its ReLU input is kept.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::{assume_init, fused_cpu_fwd, uninit_vec};
use crate::dispatch::fused_cpu_f32;
use crate::mismatch::shape_mismatch;

/// Elements per parallel task.
const CHUNK: usize = 1 << 16;

/// `f(a_i, b_i)` of every pair of elements of two equally long inputs (their elements
/// and layouts), in parallel chunks, shaped as `a`.
fn zip_map(
    (a, la): (&[f32], &Layout),
    (b, lb): (&[f32], &Layout),
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> candle_core::Result<(CpuStorage, Shape)> {
    if a.len() != b.len() {
        candle_core::bail!("add_relu: {:?} and {:?} differ", la.shape(), lb.shape());
    }
    let mut y = uninit_vec(a.len());
    y.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(yc, (ac, bc))| {
            for ((o, p), q) in yc.iter_mut().zip(ac).zip(bc) {
                o.write(f(*p, *q));
            }
        });
    // SAFETY: the chunks cover y (a and b are as long) and every element was written.
    let y = unsafe { assume_init(y) };
    Ok((CpuStorage::F32(y), la.shape().clone()))
}

/// `(a, b)` → `max(a + b, 0)`.
struct AddRelu;

/// `(y, dy)` → `dy · [y > 0]`.
struct ReluMask;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "prototree-add-relu"
    }

    fused_cpu_fwd!(self, "add_relu", |(a, la), (b, lb)| {
        zip_map((a, la), (b, lb), |p, q| (p + q).max(0.0))
    });

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = res.apply_op2_no_bwd(&dy.contiguous()?, &ReluMask)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "prototree-relu-mask"
    }

    fused_cpu_fwd!(self, "add_relu", |(y, ly), (dy, ldy)| {
        zip_map((y, ly), (dy, ldy), |v, d| if v > 0.0 { d } else { 0.0 })
    });
}

/// `relu(a + b)` of two same-shaped tensors (the residual join), fused into one pass on
/// the CPU (f32), whose backward keeps only the output; elsewhere `(a + b).relu()`.
pub fn add_relu(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if a.shape() != b.shape() {
        return Err(shape_mismatch(a, b, "add_relu"));
    }
    if fused_cpu_f32(&[a, b]) {
        return a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu);
    }
    (a + b)?.relu()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::on_both_paths;
    use candle_core::{Device, Var};

    #[test]
    fn matches_add_then_relu() -> anyhow::Result<()> {
        on_both_paths(|_| matches_add_then_relu_here())
    }

    fn matches_add_then_relu_here() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let a = Var::randn(0f32, 1.0, (2, 3, 4, 5), &dev)?;
        let b = Var::randn(0f32, 1.0, (2, 3, 4, 5), &dev)?;
        let up = Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &dev)?;
        let ours = add_relu(a.as_tensor(), b.as_tensor())?;
        let theirs = (a.as_tensor() + b.as_tensor())?.relu()?;
        let d = (&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(d, 0.0);
        let g1 = (&ours * &up)?.sum_all()?.backward()?;
        let g2 = (&theirs * &up)?.sum_all()?.backward()?;
        for v in [&a, &b] {
            let (x, y) = (
                g1.get(v.as_tensor()).unwrap(),
                g2.get(v.as_tensor()).unwrap(),
            );
            assert_eq!((x - y)?.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
        }
        Ok(())
    }
}
