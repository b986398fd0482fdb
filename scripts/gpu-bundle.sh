#!/usr/bin/env bash
# Builds the GPU bundle here (no GPU needed) for scripts/gpu-check.sh on a GPU machine
# that has no Rust toolchain and no network: the `cuda` builds of the `prototree` binary
# and of the one check binary (examples/gpu_check: op, backbone, head and reference
# parity, head and training-step benches), the fixtures those checks read, the PyTorch
# side-by-side scripts and gpu-check.sh, packed with xz.
#
#   usage: bash scripts/gpu-bundle.sh [OUT.tar.xz]     (default dist/prototree-gpu-bundle.tar.xz)
#   env:   CARGO_TARGET_DIR (target-cuda), CUDATK (/tmp/cudatk: scripts/cuda-toolkit.sh's
#          folder, made when missing), CUDA_COMPUTE_CAP (90), SKIP_BUILD=1 (pack what is built)
#
# On the GPU machine:
#   tar -xJf prototree-gpu-bundle.tar.xz && cd prototree-gpu-bundle && bash scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
OUT="${1:-dist/prototree-gpu-bundle.tar.xz}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target-cuda}"
CUDATK="${CUDATK:-/tmp/cudatk}"
NAME=prototree-gpu-bundle

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  if [ ! -f "$CUDATK/env.sh" ]; then
    bash scripts/cuda-toolkit.sh "$CUDATK"
  fi
  # shellcheck disable=SC1091
  source "$CUDATK/env.sh"
  CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-2}" \
    cargo build --release -p prototree-cli -p prototree \
    --features prototree-cli/cuda,prototree/cuda --bin prototree --example gpu_check
fi
BIN="$CARGO_TARGET_DIR/release"
for f in "$BIN/prototree" "$BIN/examples/gpu_check"; do
  [ -x "$f" ] || { echo "gpu-bundle: $f is not built (run without SKIP_BUILD)" >&2; exit 1; }
  # A cuda build needs the driver's libcuda.so.1; a default build does not.
  ldd "$f" 2>/dev/null | grep -q 'libcuda\.so\.1' \
    || { echo "gpu-bundle: $f is not a cuda build (no libcuda.so.1 in its NEEDED)" >&2; exit 1; }
done

STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
B="$STAGE/$NAME"
mkdir -p "$B/bin" "$B/scripts" "$B/benches/reference" "$B/fixtures/backbones" "$B/fixtures/reference"
strip -o "$B/bin/prototree" "$BIN/prototree"
strip -o "$B/bin/gpu_check" "$BIN/examples/gpu_check"
cp scripts/gpu-check.sh "$B/scripts/"
cp benches/reference/train_step.py benches/reference/tree_head.py "$B/benches/reference/"
cp fixtures/backbones/resnet_basic.safetensors fixtures/backbones/resnet_bottleneck.safetensors \
  fixtures/backbones/efficientnet_lite_narrow.safetensors "$B/fixtures/backbones/"
for r in smallcnn_d3 smallcnn_d4_pruned_log smallcnn_d2_kontschieder_legacy images; do
  cp -r "fixtures/reference/$r" "$B/fixtures/reference/"
done
{
  echo "prototree-rs GPU bundle"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)"
  echo "CUDA_COMPUTE_CAP: ${CUDA_COMPUTE_CAP:-unset}"
  echo "nvcc: $( (nvcc --version 2>/dev/null || true) | tail -1)"
  echo
  echo "run:  bash scripts/gpu-check.sh [OUT_DIR]   -> OUT_DIR/summary.json, OUT_DIR/summary.md"
  echo "NEEDED by bin/*:"
  ldd "$BIN/prototree" 2>/dev/null | awk '{print "  " $1}' | grep -E 'cuda|cublas|curand|nvrtc|stdc' || true
} > "$B/MANIFEST.txt"

mkdir -p "$(dirname "$OUT")"
tar -C "$STAGE" -cf - "$NAME" | xz -9 -T2 > "$OUT"
size=$(stat -c %s "$OUT")
echo "gpu-bundle: $OUT ($((size / 1024 / 1024)) MiB, $size bytes)"
if [ "$size" -ge $((64 * 1024 * 1024)) ]; then
  echo "gpu-bundle: over 64 MiB" >&2
  exit 1
fi
