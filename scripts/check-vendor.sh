#!/usr/bin/env bash
# Checks that vendor/candle-core is candle-core as published plus only the patch in
# vendor/candle-core-backprop.patch: fetches the published crate into a scratch project
# (`cargo vendor`), applies the patch and compares the trees. With --update, rewrites
# vendor/candle-core from the published crate and the patch (after a version bump: edit
# VERSION here and the pin in Cargo.toml, then re-make the patch if it no longer applies).
#
# usage: scripts/check-vendor.sh [--update]
set -euo pipefail
VERSION=0.11.1
cd "$(dirname "$0")/.."
ROOT=$PWD
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$SCRATCH/p/src"
cat >"$SCRATCH/p/Cargo.toml" <<TOML
[package]
name = "vendor-check"
version = "0.0.0"
edition = "2021"
[dependencies]
candle-core = "=$VERSION"
TOML
echo 'fn main() {}' >"$SCRATCH/p/src/main.rs"
(cd "$SCRATCH/p" && cargo vendor --quiet "$SCRATCH/v" >/dev/null)
PRISTINE="$SCRATCH/v/candle-core"
rm -f "$PRISTINE/.cargo-checksum.json" "$PRISTINE/.cargo_vcs_info.json"
(cd "$PRISTINE" && patch --quiet -p1 <"$ROOT/vendor/candle-core-backprop.patch")
if [ "${1:-}" = "--update" ]; then
    rm -rf vendor/candle-core
    cp -r "$PRISTINE" vendor/candle-core
    echo "vendor/candle-core rewritten from candle-core $VERSION and the patch"
    exit 0
fi
if diff -r "$PRISTINE" vendor/candle-core >"$SCRATCH/diff"; then
    echo "vendor/candle-core is candle-core $VERSION with vendor/candle-core-backprop.patch, nothing else"
else
    cat "$SCRATCH/diff"
    echo "vendor/candle-core differs from candle-core $VERSION + the patch (above)" >&2
    exit 1
fi
