#!/usr/bin/env bash
# Side-by-side: our tree head vs a reference-style PyTorch head, same sizes and threads.
#   usage: benches/compare.sh [PYTHON]   (PYTHON: an interpreter with torch; default python3)
# Prints both JSON lines and the ratio PyTorch / ours for each figure (>1: we are faster).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python3}"
ARGS=(--depth 9 --features 256 --fmap 7 --batch 64 --classes 200 --iters "${ITERS:-10}" --threads "${THREADS:-2}")
"$PY" -c 'import torch' 2>/dev/null || { echo "error: $PY cannot import torch (pip install torch in a venv and pass its python)" >&2; exit 1; }
ours=$(cargo run --release -q -p prototree-tree --example tree_head_bench -- "${ARGS[@]}")
theirs=$("$PY" benches/reference/tree_head.py "${ARGS[@]}")
echo "ours:    $ours"
echo "pytorch: $theirs"
"$PY" - "$ours" "$theirs" <<'PYEOF'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for key in ("fwd_ms", "fwd_bwd_ms", "train_step_ms"):
    print(f"{key:>14}: ours {ours[key]:8.2f} ms  pytorch {theirs[key]:8.2f} ms  speed-up x{theirs[key] / ours[key]:.1f}")
PYEOF
