"""Where a training epoch's CPU time goes: attributes each sample of a `perf record` call
graph to the innermost frame that belongs to a known part of the step (convolution forward
and backward, BatchNorm, max-pool, data, candle's elementwise ops, page faults, ...).

usage:
  CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=target-prof \
      cargo build --release -p prototree --example train_epoch_bench
  RAYON_NUM_THREADS=2 perf record -F 999 -g --call-graph dwarf,16384 -o perf.data \
      target-prof/release/examples/train_epoch_bench --data DIR ...   (the demo recipe's flags)
  perf script -i perf.data -F comm,tid,ip,sym > perf.txt     (inline frames included)
  python3 benches/perf_breakdown.py perf.txt
"""
import re, sys, collections
# Owners, most specific first: the first frame (leaf to root) that matches names the sample.
OWNERS = [
    ("data: augmentation (flip, shift warp)", r"prototree_data::augment"),
    ("data: normalise to CHW", r"prototree_data::transform::to_chw"),
    ("data: batching", r"prototree_data::"),
    ("conv backward (regather + 2 gemms + scatter)", r"conv_cpu::\{impl#2\}|PackedBackward"),
    ("conv: forward (im2col + gemm)", r"conv_cpu"),
    ("BatchNorm+ReLU", r"batch_norm"),
    ("max-pool", r"max_pool"),
    ("residual add+ReLU (ResNets)", r"add_relu"),
    ("tree head (distances, routing, leaves)", r"min_distance|leaf_paths|prototree_ops::leaves|prototree_ops::distance|prototree_tree::"),
    ("AdamW", r"prototree_learn::adam"),
    ("candle backprop bookkeeping and grad sums", r"candle_core::backprop"),
    ("candle elementwise/copies (optimizer, loss, head glue)", r"candle_core::"),
    ("learner (loss, stats, leaf update glue)", r"prototree_learn::"),
]
# Whole-stack rules, checked before the owners: loading and set-up before the first epoch
# (decoding, resizing and caching the split, the model's initialisation), and the
# convolution's backward pass, whose regathers and weight reorders run in the forward's
# `Geometry` helpers (innermost frame `conv_cpu::Geometry::gather`).
LOADING = re.compile(r"loader::\{impl#0\}::decode|prepare_views|load_rgb|Dataset::open|ProtoTree::new|prototree_tree::init")
CONV_BACKWARD = re.compile(r"conv_cpu::\{impl#2\}|PackedBackward")
KERNEL_FAULT = re.compile(r"clear_page|page_fault|handle_mm_fault|folio_zero")
IDLE = re.compile(r"rayon_core::(registry::WorkerThread::wait_until|sleep)|BarrierGuard|spin_loop|futex|schedule|finish_task_switch|__rust_begin_short_backtrace$")
counts = collections.Counter()
total = 0
def flush(frames):
    global total
    if not frames:
        return
    total += 1
    syms = [f for f in frames]
    if any(LOADING.search(s) for s in syms):
        counts["loading and set-up before the first epoch"] += 1
        return
    if any(KERNEL_FAULT.search(s) for s in syms[:8]):
        counts["page faults (first touch of fresh memory)"] += 1
        return
    for s in syms:
        for name, pat in OWNERS:
            if re.search(pat, s):
                if name.startswith("conv: forward") and any(CONV_BACKWARD.search(f) for f in syms):
                    name = next(n for n, _ in OWNERS if n.startswith("conv backward"))
                counts[name] += 1
                return
    if any(IDLE.search(s) for s in syms[:3]) or (syms and "rust_begin_short_backtrace" in syms[0]):
        counts["thread pools waiting (rayon, candle's pool)"] += 1
        return
    counts["other: " + (syms[0][:60] if syms else "?")] += 1
frames = []
for line in open(sys.argv[1]):
    if not line.startswith("\t"):
        flush(frames); frames = []
        continue
    parts = line.strip().split(" ", 1)
    frames.append(parts[1] if len(parts) > 1 else "?")
flush(frames)
acc = 0
for name, n in counts.most_common():
    if n / total < 0.004: continue
    print(f"{100*n/total:5.1f} %  {name}")
print("samples", total)
