//! Tiny trees computed by hand: distances, routing, outputs and a leaf update.

mod common;

use common::small_cnn;

use candle_core::{Device, Tensor};
use prototree_tree::{topology::prune_branch, Direction, Latent, Leaves, ProtoTree, Topology};

fn tree(depth: usize, dim: usize, classes: usize) -> anyhow::Result<ProtoTree> {
    let cfg = small_cnn(depth, dim, classes).check()?;
    Ok(ProtoTree::new(&cfg, &Device::Cpu, 3)?)
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn depth_one_forward_by_hand() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let mut t = tree(1, 2, 2)?;
    // One prototype p = (1, 0); two patches (0, 0) and (1, 1): squared distances 1 and 1,
    // then a third patch (1, 0.5): 0.25 -> min distance 0.5.
    t.set_prototypes(&Tensor::new(&[[1f32, 0.0]], &dev)?)?;
    let patches = Tensor::new(&[[[0f32, 0.0], [1.0, 1.0], [1.0, 0.5]]], &dev)?;
    // Leaves: left favours class 0, right class 1.
    let params = Tensor::new(&[[2f32, 0.0], [0.0, 1.0]], &dev)?;
    t.set_leaves(Leaves::from_params(params)?)?;
    let out = t.forward_latent(&Latent {
        patches,
        height: 1,
        width: 3,
    })?;
    let d = (0.25f32 + 1e-14).sqrt();
    let s = (-d).exp();
    let c_l = [2f32.exp() / (2f32.exp() + 1.0), 1.0 / (2f32.exp() + 1.0)];
    let c_r = [1.0 / (1.0 + 1f32.exp()), 1f32.exp() / (1.0 + 1f32.exp())];
    let want = [
        (1.0 - s) * c_l[0] + s * c_r[0],
        (1.0 - s) * c_l[1] + s * c_r[1],
    ];
    let got = out.probabilities.to_vec2::<f32>()?;
    assert!(
        close(got[0][0], want[0]) && close(got[0][1], want[1]),
        "{got:?} vs {want:?}"
    );
    let pi = out.leaf_path_probs.to_vec2::<f32>()?;
    assert!(close(pi[0][0], 1.0 - s) && close(pi[0][1], s));
    assert!(close(out.min_distances.to_vec2::<f32>()?[0][0], d));
    Ok(())
}

#[test]
fn depth_two_with_a_pruned_branch_by_hand() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let mut t = tree(2, 1, 2)?;
    // Prototypes (heap order root, L, R) in 1-D; one patch at 0.
    t.set_prototypes(&Tensor::new(&[[0.5f32], [1.0], [2.0]], &dev)?)?;
    let params = Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 3.0]], &dev)?;
    t.set_leaves(Leaves::from_params(params)?)?;
    let latent = Latent {
        patches: Tensor::new(&[[[0f32]]], &dev)?,
        height: 1,
        width: 1,
    };
    let s = |x: f32| (-(x * x + 1e-14).sqrt()).exp();
    let (s0, s1, s2) = (s(0.5), s(1.0), s(2.0));
    let pi = t
        .forward_latent(&latent)?
        .leaf_path_probs
        .to_vec2::<f32>()?;
    let want = [
        (1.0 - s0) * (1.0 - s1),
        (1.0 - s0) * s1,
        s0 * (1.0 - s2),
        s0 * s2,
    ];
    for (a, b) in pi[0].iter().zip(want) {
        assert!(close(*a, b), "{a} vs {b}");
    }
    // Prune the right branch, keeping its left leaf: the root's right child is now leaf 2.
    let mut topo = Topology::complete(2)?;
    prune_branch(&mut topo, 2, Direction::Left);
    t.set_topology(topo)?;
    let out = t.forward_latent(&latent)?;
    let pi = out.leaf_path_probs.to_vec2::<f32>()?;
    let want = [(1.0 - s0) * (1.0 - s1), (1.0 - s0) * s1, s0, 0.0];
    for (a, b) in pi[0].iter().zip(want) {
        assert!(close(*a, b), "{a} vs {b}");
    }
    Ok(())
}
