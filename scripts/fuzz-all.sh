#!/usr/bin/env bash
# Runs every fuzz target in turn (one core at a time), SECONDS each.
# usage: scripts/fuzz-all.sh SECONDS
set -uo pipefail
seconds=${1:?usage: fuzz-all.sh SECONDS}
dir=$(cd "$(dirname "$0")" && pwd)
failed=0
for t in pickle torch_file state_dict model_dir run_toml cub_metadata; do
    echo "== $t ($seconds s)"
    "$dir/fuzz.sh" "$t" "$seconds" || failed=1
done
exit $failed
