#!/usr/bin/env bash
# Runs one cargo-fuzz (libFuzzer) target for a given time on one core, under a 2 GB RSS
# limit, from a seed corpus made from the fixtures (scripts/fuzz-seeds.py).
#
# usage: scripts/fuzz.sh TARGET SECONDS
# targets: pickle torch_file state_dict model_dir run_toml cub_metadata
#
# The toolchain is stable: cargo-fuzz's nightly flags are enabled with RUSTC_BOOTSTRAP=1.
# FUZZ_SANITIZER=none skips AddressSanitizer (default: address).
# Writes fuzz/logs/TARGET.log; the growing corpus is fuzz/corpus/TARGET, crashes go to
# fuzz/artifacts/TARGET (both ignored by git). Needs `cargo install cargo-fuzz`.
set -euo pipefail
target=${1:?usage: fuzz.sh TARGET SECONDS}
seconds=${2:?usage: fuzz.sh TARGET SECONDS}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}
rm -rf seeds && python3 "$root/scripts/fuzz-seeds.py" seeds
mkdir -p "corpus/$target" "artifacts/$target" logs
cargo fuzz build -s "$sanitizer" -a "$target"
cargo fuzz run -s "$sanitizer" -a "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="artifacts/$target/" \
    > "logs/$target.log" 2>&1 && status=0 || status=$?
grep -E "^#[0-9]+[[:space:]]+DONE|^stat::|^==[0-9]+==|SUMMARY|panicked|Test unit written" "logs/$target.log" || true
echo "corpus: $(ls "corpus/$target" | wc -l) files; exit $status"
exit $status
