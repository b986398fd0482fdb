//! Finite-difference check of the gradient through distance → min-pool → similarity →
//! routing → leaf mixture → NLL, in f64.

use candle_core::{DType, Device, Tensor, Var};
use prototree_tree::{distance, loss, routing::leaf_path_probabilities};

/// Loss of the tree head as a function of patches and prototypes.
fn head_loss(
    patches: &Tensor,
    protos: &Tensor,
    leaf_dists: &Tensor,
    labels: &Tensor,
    depth: usize,
) -> candle_core::Result<Tensor> {
    let d = distance::min_distances(patches, protos).map_err(candle_core::Error::wrap)?;
    let s = distance::similarity(&d).map_err(candle_core::Error::wrap)?;
    let pi = leaf_path_probabilities(&s, depth).map_err(candle_core::Error::wrap)?;
    let y = pi.matmul(leaf_dists)?;
    loss::nll_loss(&y, labels).map_err(candle_core::Error::wrap)
}

#[test]
fn finite_differences_match_autograd() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let depth = 2;
    let (b, n, dim, p, k) = (3, 4, 5, 3, 3);
    // Deterministic pseudo-random values.
    let vals = |count: usize, offset: f64| -> Vec<f64> {
        (0..count)
            .map(|i| ((i as f64 * 0.7548776662 + offset).fract()) * 0.8 + 0.1)
            .collect()
    };
    let patches = Var::from_tensor(&Tensor::from_vec(
        vals(b * n * dim, 0.1),
        (b, n, dim),
        &dev,
    )?)?;
    let protos = Var::from_tensor(&Tensor::from_vec(vals(p * dim, 0.37), (p, dim), &dev)?)?;
    let leaf_logits = Tensor::from_vec(vals(4 * k, 0.9), (4, k), &dev)?;
    let leaf_dists = candle_nn::ops::softmax_last_dim(&(leaf_logits * 3.0)?)?;
    let labels = Tensor::new(&[0u32, 2, 1], &dev)?;

    let l = head_loss(
        patches.as_tensor(),
        protos.as_tensor(),
        &leaf_dists,
        &labels,
        depth,
    )?;
    let grads = l.backward()?;
    let eps = 1e-6;
    for var in [&patches, &protos] {
        let g = grads
            .get(var.as_tensor())
            .expect("gradient")
            .flatten_all()?
            .to_vec1::<f64>()?;
        let base = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
        let shape = var.as_tensor().shape().clone();
        for i in 0..base.len() {
            let eval = |delta: f64| -> anyhow::Result<f64> {
                let mut v = base.clone();
                v[i] += delta;
                let t = Tensor::from_vec(v, shape.clone(), &dev)?;
                let (pt, pr) = if std::ptr::eq(var, &patches) {
                    (t, protos.as_tensor().clone())
                } else {
                    (patches.as_tensor().clone(), t)
                };
                Ok(head_loss(&pt, &pr, &leaf_dists, &labels, depth)?.to_scalar::<f64>()?)
            };
            let numeric = (eval(eps)? - eval(-eps)?) / (2.0 * eps);
            assert!(
                (numeric - g[i]).abs() < 1e-6 + 1e-4 * numeric.abs(),
                "element {i}: numeric {numeric} vs autograd {}",
                g[i]
            );
        }
    }
    assert_eq!(l.dtype(), DType::F64);
    Ok(())
}
