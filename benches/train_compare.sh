#!/usr/bin/env bash
# Whole training epochs, data loading included: ours (the train_epoch_bench example: the
# loader and learner of `prototree train`) and a reference-style PyTorch trainer
# (benches/reference/train_epoch.py) on the same generated data and recipe, run in turn
# ROUNDS times; prints per-epoch medians, their ratio and peak memory.
#
# usage: benches/train_compare.sh PYTHON [demo|cub|resnet18]
#   PYTHON   a Python with torch and torchvision (e.g. a throwaway venv's bin/python)
#   demo     the demo's recipe: small CNN, 64 px, depth 5, D 64, batch 32, flips +
#            shifts, lr 2e-3 everywhere, on the demo's 12-class synthetic set (default)
#   cub      CUB scale: ResNet-50, 224 px, depth 9, D 256, batch 64 (BATCH=…), the
#            reference augmentation, whole backbone training (no frozen epoch), on a
#            200-class synthetic set of 60 images per class (8,400 training images); only
#            the first MAX_BATCHES (default 8) batches of one epoch
#   resnet18 the same at ResNet-18
# env: THREADS (2), ROUNDS (3), EPOCHS (demo: 5), DATA (the set; generated when missing),
#      BIN (our release binaries, default target/release)
set -euo pipefail
PY=${1:?usage: benches/train_compare.sh PYTHON [demo|cub|resnet18]}
SETUP=${2:-demo}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
BIN=${BIN:-target/release}
cd "$(dirname "$0")/.."
if [ ! -x "$BIN/examples/train_epoch_bench" ] || [ ! -x "$BIN/prototree" ]; then
    cargo build --release -p prototree-cli -p prototree --example train_epoch_bench
fi
case "$SETUP" in
demo)
    DATA=${DATA:-/tmp/prototree-bench-birds64}
    [ -f "$DATA/images.txt" ] || "$BIN/prototree" synth --out "$DATA" --seed 0 >/dev/null
    ARGS="--backbone small-cnn --size 64 --batch 32 --depth 5 --features 64 --epochs ${EPOCHS:-5}
          --augmentation flip --lr 2e-3 --lr-block 2e-3 --lr-net 2e-3 --freeze-epochs 0"
    ;;
cub | resnet18)
    DATA=${DATA:-/tmp/prototree-bench-cub200}
    [ -f "$DATA/images.txt" ] ||
        "$BIN/prototree" synth --out "$DATA" --classes 200 --per-class 60 --size 224 --seed 0 >/dev/null
    NET=resnet50
    [ "$SETUP" = resnet18 ] && NET=resnet18
    ARGS="--backbone $NET --size 224 --batch ${BATCH:-64} --depth 9 --features 256 --epochs 1
          --max-batches ${MAX_BATCHES:-8} --augmentation reference
          --lr 1e-3 --lr-block 1e-3 --lr-net 1e-5 --freeze-epochs 0"
    ;;
*)
    echo "unknown set-up $SETUP (expected demo, cub or resnet18)" >&2
    exit 2
    ;;
esac
# shellcheck disable=SC2086
set -- --data "$DATA" $ARGS --threads "$THREADS"
OUT=$(mktemp -d)
for r in $(seq 1 "$ROUNDS"); do
    RAYON_NUM_THREADS=$THREADS "$BIN/examples/train_epoch_bench" "$@" >"$OUT/ours.$r.json"
    "$PY" benches/reference/train_epoch.py "$@" >"$OUT/torch.$r.json"
    echo "round $r: ours $(cat "$OUT/ours.$r.json")"
    echo "round $r: torch $(cat "$OUT/torch.$r.json")"
done
"$PY" - "$OUT" "$ROUNDS" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(side):
    return [json.load(open(f"{out}/{side}.{r}.json")) for r in range(1, rounds + 1)]
ours, torch = load("ours"), load("torch")
def epochs(runs):  # every epoch after the first of each run (the first warms caches up)
    return [s for r in runs for s in (r["epoch_s"][1:] or r["epoch_s"])]
def first(runs):
    return [r["epoch_s"][0] for r in runs]
med = statistics.median
ratios = [t / o for o_run, t_run in zip(ours, torch)
          for o, t in zip(o_run["epoch_s"][1:] or o_run["epoch_s"], t_run["epoch_s"][1:] or t_run["epoch_s"])]
n = ours[0]["batches_per_epoch"] * ours[0]["batch"]
print(f"images per epoch (as timed): {min(n, ours[0]['train_images'])}")
print(f"ours : epoch {med(epochs(ours)):.3f} s (first {med(first(ours)):.3f} s; loading and caching before it {med(r['load_s'] for r in ours):.2f} s), "
      f"step {med(r['step_ms'] for r in ours):.1f} ms, peak RSS {med(r['peak_rss_mb'] for r in ours):.0f} MB, process {med(r['total_s'] for r in ours):.1f} s")
print(f"torch: epoch {med(epochs(torch)):.3f} s (first {med(first(torch)):.3f} s), "
      f"step {med(r['step_ms'] for r in torch):.1f} ms + waiting for data {med(r['wait_ms'] for r in torch):.1f} ms, "
      f"peak RSS {med(r['peak_rss_mb'] for r in torch):.0f} MB, process {med(r['total_s'] for r in torch):.1f} s")
print(f"speed-up (PyTorch epoch time / ours), median of paired epochs: x{med(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})")
print(f"whole processes: ours / PyTorch wall time {med(o['total_s'] / t['total_s'] for o, t in zip(ours, torch)):.2f}")
EOF
