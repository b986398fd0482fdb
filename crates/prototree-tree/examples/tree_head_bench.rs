//! Times the tree head (add-on output → distances → routing → leaves) on random latent
//! patches and prints one JSON line of medians, for scripts:
//!
//! ```text
//! cargo run --release -p prototree-tree --example tree_head_bench -- \
//!     --depth 9 --features 256 --fmap 7 --batch 64 --classes 200 --iters 10 --threads 2
//! ```
//!
//! `fwd_ms`: soft forward; `fwd_bwd_ms`: forward + NLL + backward to the patches and
//! prototypes; `train_step_ms`: that plus an Adam step on the prototypes and the
//! derivative-free leaf update; `greedy_ms`: greedy routing computing only the path's
//! prototypes; `matmul_ms`: the bare `(b·h·w, d) × (d, P)` product, for reference.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use prototree_backbone::BackboneKind;
use prototree_tree::adam::{Adam, AdamConfig};
use prototree_tree::trainer::one_hot;
use prototree_tree::{loss, Latent, Leaves, ProtoTree, Routing, TreeConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time<F: FnMut() -> anyhow::Result<()>>(iters: usize, mut f: F) -> anyhow::Result<f64> {
    f()?; // warm-up
    let mut t = Vec::with_capacity(iters);
    for _ in 0..iters {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(t))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let depth = arg(&args, "--depth", 9);
    let dim = arg(&args, "--features", 256);
    let fmap = arg(&args, "--fmap", 7);
    let batch = arg(&args, "--batch", 64);
    let classes = arg(&args, "--classes", 200);
    let iters = arg(&args, "--iters", 10);
    let threads = arg(&args, "--threads", 0);
    if threads > 0 {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    let dev = Device::Cpu;
    let cfg = TreeConfig {
        backbone: BackboneKind::SmallCnn,
        depth,
        proto_dim: dim,
        num_classes: classes,
    }
    .check()?;
    let mut tree = ProtoTree::new(&cfg, &dev, 0)?;
    let leaves = Tensor::randn(0f32, 2.0, (cfg.num_leaves(), classes), &dev)?.relu()?;
    tree.set_leaves(Leaves::from_params(leaves)?)?;
    let n = fmap * fmap;
    let patches = Var::from_tensor(&Tensor::rand(0f32, 1.0, (batch, n, dim), &dev)?)?;
    let latent = Latent {
        patches: patches.as_tensor().clone(),
        height: fmap,
        width: fmap,
    };
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % classes as u32).collect();
    let labels = Tensor::new(labels.as_slice(), &dev)?;
    let proto_var = {
        let data = tree
            .varmap()
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?;
        data.get(prototree_tree::init::PROTOTYPES)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no prototypes"))?
    };
    let fwd = time(iters, || {
        tree.forward_latent(&latent)?
            .probabilities
            .to_vec2::<f32>()?;
        Ok(())
    })?;
    let fwd_bwd = time(iters, || {
        let out = tree.forward_latent(&latent)?;
        loss::nll_loss(&out.probabilities, &labels)?.backward()?;
        Ok(())
    })?;
    let mut adam = Adam::new(vec![("p".into(), proto_var)], AdamConfig::default());
    let start_leaves = tree.leaves().params().clone();
    let targets = one_hot(&labels, classes)?;
    let step = time(iters, || {
        let out = tree.forward_latent(&latent)?;
        let grads = loss::nll_loss(&out.probabilities, &labels)?.backward()?;
        adam.step(&grads, 1e-3)?;
        tree.leaves_mut().derivative_free_update(
            &out.leaf_path_probs,
            &out.probabilities,
            &targets,
            &start_leaves,
            100,
        )?;
        Ok(())
    })?;
    let greedy = time(iters, || {
        tree.predict_latent(&latent, Routing::Greedy)?;
        Ok(())
    })?;
    let flat = patches.as_tensor().reshape((batch * n, dim))?;
    let protos_t = tree.prototypes()?.t()?.contiguous()?;
    let matmul = time(iters, || {
        flat.matmul(&protos_t)?.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    println!(
        "{{\"fwd_ms\": {fwd:.3}, \"fwd_bwd_ms\": {fwd_bwd:.3}, \"train_step_ms\": {step:.3}, \"greedy_ms\": {greedy:.3}, \"matmul_ms\": {matmul:.3}, \"depth\": {depth}, \"features\": {dim}, \"fmap\": {fmap}, \"batch\": {batch}, \"classes\": {classes}, \"threads\": {threads}}}"
    );
    Ok(())
}
