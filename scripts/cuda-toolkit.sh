#!/usr/bin/env bash
# Assemble a CUDA toolkit (nvcc + headers + cudart/cuBLAS/cuRAND/NVRTC + a libcuda
# link stub) from PyPI wheels only, into DEST, idempotently.  No GPU, no system CUDA,
# no network beyond the package registries is needed.
#
#   usage: cuda-toolkit.sh [DEST]        (default DEST=/tmp/cudatk)
#   then:  source DEST/env.sh                      (sets CUDA_ROOT/CUDA_HOME/CUDA_PATH/PATH/...)
#
# Why CUDA 13.0 and not 12.x: the nvidia-cuda-nvcc-cu12 wheels (every 12.x version)
# contain only ptxas + libnvvm, not the nvcc driver / cicc / cudafe++.  From CUDA 13
# on, the wheels (nvidia-cuda-nvcc, nvidia-nvvm, nvidia-cuda-crt, ...) hold a complete
# compiler under nvidia/cu13/.  13.0.x is pinned because the target GPU machines run
# driver 580.x (= CUDA 13.0): PTX written by nvcc 13.1+ would not JIT on that driver.
# Override with CUDA_TOOLKIT_PIN=13.x.y (a version of the `cuda-toolkit` metapackage).
set -euo pipefail

DEST="${1:-/tmp/cudatk}"
PIN="${CUDA_TOOLKIT_PIN:-13.0.2}"
PY="${PYTHON:-python3}"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
VENV="$DEST/venv"
ROOT="$DEST/cuda"

# 1. venv + wheels (pip is a no-op when already satisfied)
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" || { echo "python venv failed (apt-get install python3-venv?)" >&2; exit 1; }
fi
command -v gcc >/dev/null || { echo "gcc is needed (nvcc host compiler, libcuda stub)" >&2; exit 1; }
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  "cuda-toolkit[nvcc,nvvm,crt,cudart,cccl,cublas,curand,nvrtc]==${PIN}"

CU="$("$VENV/bin/python" - <<'EOF'
import importlib.util, os
spec = importlib.util.find_spec("nvidia")
print(os.path.join(list(spec.submodule_search_locations)[0], "cu13"))
EOF
)"
[ -x "$CU/bin/nvcc" ] || { echo "nvcc not found under $CU" >&2; exit 1; }
[ -x "$CU/nvvm/bin/cicc" ] || { echo "cicc not found under $CU/nvvm" >&2; exit 1; }

# 2. CUDA_ROOT-like tree of symlinks: bin include nvvm -> wheel dirs; lib64/ with
#    unversioned .so names; lib -> lib64; lib64/stubs/libcuda.so (link-time stub).
mkdir -p "$ROOT/lib64/stubs"
for d in bin include nvvm; do ln -sfn "$CU/$d" "$ROOT/$d"; done
ln -sfn lib64 "$ROOT/lib"
for f in "$CU"/lib/*.so* "$CU"/lib/*.a; do
  [ -e "$f" ] || continue
  b="$(basename "$f")"
  ln -sfn "$f" "$ROOT/lib64/$b"
  case "$b" in
    *.so.*) base="${b%%.so.*}.so"
            # libnvrtc.so.13 / libnvrtc.alt.so.13: keep the plain one as libnvrtc.so
            [ -e "$ROOT/lib64/$base" ] || ln -sfn "$b" "$ROOT/lib64/$base" ;;
  esac
done
ln -sfn libnvrtc.so.13 "$ROOT/lib64/libnvrtc.so"
ln -sfn libcudart.so.13 "$ROOT/lib64/libcudart.so"

# libcuda.so is the driver's library, not part of any toolkit wheel.  candle-core
# turns on cudarc's `dynamic-linking`, so the linker needs *a* libcuda.so: build a
# stub exporting every cu* entry point named in cuda.h, with SONAME libcuda.so.1 so
# the binary's DT_NEEDED is the real driver library at run time.  It lives only in
# lib64/stubs (never put that dir on LD_LIBRARY_PATH).
STUB="$ROOT/lib64/stubs/libcuda.so"
if [ ! -s "$STUB" ] || [ "$CU/include/cuda.h" -nt "$STUB" ]; then
  tmp="$(mktemp -d)"
  {
    grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\b' "$CU/include/cuda.h"
    gcc -E -P -I"$CU/include" "$CU/include/cuda.h" | grep -ohE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d ' ('
  } | sort -u > "$tmp/syms"
  awk '{printf "int %s(void){return 999;}\n", $1}' "$tmp/syms" > "$tmp/stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$STUB" "$tmp/stub.c"
  rm -rf "$tmp"
fi

# 3. env file for builds
cat > "$DEST/env.sh" <<EOF
# source me before cargo build --features cuda
export CUDA_ROOT="$ROOT" CUDA_HOME="$ROOT" CUDA_PATH="$ROOT"
export NVCC="$ROOT/bin/nvcc"
export PATH="$ROOT/bin:\$PATH"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
export LIBRARY_PATH="$ROOT/lib64:$ROOT/lib64/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
EOF

"$ROOT/bin/nvcc" --version | tail -2
echo "CUDA root ready: $ROOT   (source $DEST/env.sh)"
