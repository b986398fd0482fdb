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
//! prototypes; `min_dist_ms`: the min-pooled distances alone; `matmul_ms`: the bare
//! `(b·h·w, d) × (d, P)` candle product (nothing else), the yardstick of the forward pass;
//! `fwd_over_matmul` and `soft_over_greedy` are the two ratios of the targets.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use prototree_tree::adam::{Adam, AdamConfig};
use prototree_tree::trainer::one_hot;
use prototree_tree::{distance, loss, Latent, Leaves, ProtoTree, Routing};

#[path = "../tests/common/mod.rs"]
mod common;

use common::small_cnn;

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
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Milliseconds per named figure, one sample per round.
#[derive(Default)]
struct Timings {
    names: Vec<&'static str>,
    samples: Vec<Vec<f64>>,
}

impl Timings {
    /// Runs `f` once and, if `keep`, records its time under `name`.
    fn add<F: FnMut() -> anyhow::Result<()>>(
        &mut self,
        keep: bool,
        name: &'static str,
        mut f: F,
    ) -> anyhow::Result<()> {
        let s = Instant::now();
        f()?;
        let ms = s.elapsed().as_secs_f64() * 1e3;
        let i = match self.names.iter().position(|n| *n == name) {
            Some(i) => i,
            None => {
                self.names.push(name);
                self.samples.push(Vec::new());
                self.names.len() - 1
            }
        };
        if keep {
            self.samples[i].push(ms);
        }
        Ok(())
    }

    /// Round-by-round ratios `a / b`.
    fn ratio(&self, a: &str, b: &str) -> Vec<f64> {
        let get = |n: &str| {
            self.names
                .iter()
                .position(|x| *x == n)
                .map(|i| self.samples[i].clone())
                .unwrap_or_default()
        };
        get(a).iter().zip(get(b)).map(|(x, y)| x / y).collect()
    }
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
    let cfg = small_cnn(depth, dim, classes).check()?;
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
    let mut adam = Adam::new(vec![("p".into(), proto_var)], AdamConfig::default());
    let start_leaves = tree.leaves().params().clone();
    let targets = one_hot(&labels, classes)?;
    let protos = tree.prototypes()?;
    let flat = patches.as_tensor().reshape((batch * n, dim))?;
    let protos_t = protos.t()?.contiguous()?;
    // The figures are measured in turn within each round (fwd, matmul, greedy, ...), so a
    // drift in machine speed hits all of them alike; ratios are taken round by round.
    let mut t = Timings::default();
    for round in 0..=iters {
        let keep = round > 0; // round 0 warms up
        t.add(keep, "fwd_ms", || {
            tree.forward_latent(&latent)?
                .probabilities
                .to_vec2::<f32>()?;
            Ok(())
        })?;
        // candle runs eagerly: the product is complete when `matmul` returns.
        t.add(keep, "matmul_ms", || {
            flat.matmul(&protos_t)?;
            Ok(())
        })?;
        t.add(keep, "greedy_ms", || {
            tree.predict_latent(&latent, Routing::Greedy)?;
            Ok(())
        })?;
        t.add(keep, "min_dist_ms", || {
            distance::min_distances(patches.as_tensor(), &protos)?;
            Ok(())
        })?;
        t.add(keep, "fwd_bwd_ms", || {
            let out = tree.forward_latent(&latent)?;
            loss::nll_loss(&out.probabilities, &labels)?.backward()?;
            Ok(())
        })?;
        t.add(keep, "train_step_ms", || {
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
    }
    let mut fields: Vec<String> = t
        .names
        .iter()
        .zip(&t.samples)
        .map(|(name, v)| format!("\"{name}\": {:.3}", median(v.clone())))
        .collect();
    fields.push(format!(
        "\"fwd_over_matmul\": {:.3}",
        median(t.ratio("fwd_ms", "matmul_ms"))
    ));
    fields.push(format!(
        "\"soft_over_greedy\": {:.3}",
        median(t.ratio("fwd_ms", "greedy_ms"))
    ));
    println!(
        "{{{}, \"depth\": {depth}, \"features\": {dim}, \"fmap\": {fmap}, \"batch\": {batch}, \"classes\": {classes}, \"threads\": {threads}}}",
        fields.join(", ")
    );
    Ok(())
}
