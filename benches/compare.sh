#!/usr/bin/env bash
# Side-by-side: our tree head vs a reference-style PyTorch head, same sizes and threads.
#   usage: benches/compare.sh [PYTHON]   (PYTHON: an interpreter with torch; default python3)
#   env:   THREADS (2), ITERS (10 timed iterations per run), ROUNDS (3 runs of each)
# Runs ours and theirs alternately ROUNDS times (ours, theirs, ours, theirs, ...), so a drift
# in machine speed hits both alike; prints every JSON line, then for each figure the medians
# over the rounds and the median of the round-by-round ratios PyTorch / ours (>1: we are
# faster).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python3}"
ROUNDS="${ROUNDS:-3}"
ARGS=(--depth 9 --features 256 --fmap 7 --batch 64 --classes 200 --iters "${ITERS:-10}" --threads "${THREADS:-2}")
"$PY" -c 'import torch' 2>/dev/null || { echo "error: $PY cannot import torch (pip install torch in a venv and pass its python)" >&2; exit 1; }
cargo build --release -q -p prototree-learn --example tree_head_bench
BIN=target/release/examples/tree_head_bench
ours=()
theirs=()
for ((r = 1; r <= ROUNDS; r++)); do
    o=$("$BIN" "${ARGS[@]}")
    t=$("$PY" benches/reference/tree_head.py "${ARGS[@]}")
    echo "ours    ($r/$ROUNDS): $o"
    echo "pytorch ($r/$ROUNDS): $t"
    ours+=("$o")
    theirs+=("$t")
done
"$PY" - "${ours[@]}" "${theirs[@]}" <<'PYEOF'
import json, statistics, sys
lines = [json.loads(a) for a in sys.argv[1:]]
n = len(lines) // 2
ours, theirs = lines[:n], lines[n:]
for key in ("fwd_ms", "fwd_bwd_ms", "train_step_ms"):
    o = statistics.median(r[key] for r in ours)
    t = statistics.median(r[key] for r in theirs)
    ratio = statistics.median(b[key] / a[key] for a, b in zip(ours, theirs))
    print(f"{key:>14}: ours {o:8.2f} ms  pytorch {t:8.2f} ms  speed-up x{ratio:.1f} (median of {n} rounds)")
for key in ("fwd_over_matmul", "soft_over_greedy"):
    if all(key in r for r in ours):
        print(f"{key:>16}: {statistics.median(r[key] for r in ours):.2f} (ours, median of {n} rounds)")
PYEOF
