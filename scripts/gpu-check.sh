#!/usr/bin/env bash
# One prepared GPU check of prototree-rs, for a machine with an NVIDIA GPU, no Rust
# toolchain and no network: run it from the unpacked bundle of scripts/gpu-bundle.sh.
#
#   usage: bash scripts/gpu-check.sh [OUT_DIR]      (default OUT_DIR: ./gpu-check-out)
#   env:   DEVICE (cuda:0), BUDGET_S (450: the whole run), PYTHON (python3, with torch for
#          the side-by-side steps), DEMO_EPOCHS (40), BIN_DIR (./bin)
#
# Writes OUT_DIR/summary.json and OUT_DIR/summary.md (and one log per step under
# OUT_DIR/logs). Every step has its own timeout, cut to what is left of BUDGET_S; a failing
# or timed-out step is recorded and the run goes on, so a summary is always written.
# Steps, most important first: device, libraries, ops, head, backbones, reference,
# train-step (ours, then PyTorch's), head-bench (ours, then PyTorch's), demo, routings.
#
# Exit status: 0 every step passed; 1 some step failed or timed out; 3 no GPU here (no
# nvidia-smi and no driver library libcuda.so.1: a cuda build cannot even start);
# 4 the binaries' CUDA libraries are missing (see the summary for LD_LIBRARY_PATH).
set -u -o pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/gpu-check-out}"
DEVICE="${DEVICE:-cuda:0}"
BUDGET_S="${BUDGET_S:-450}"
PY="${PYTHON:-python3}"
DEMO_EPOCHS="${DEMO_EPOCHS:-40}"
BIN_DIR="${BIN_DIR:-$ROOT/bin}"
CLI="$BIN_DIR/prototree"
CHECK="$BIN_DIR/gpu_check"
FIX="$ROOT/fixtures"
mkdir -p "$OUT/logs" "$OUT/steps" "$OUT/work"
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT"/steps/*.json "$OUT"/steps/*.meta "$OUT"/logs/*.peak_mb
START=$(date +%s)
STEP_NO=0
FAILED=0

say() { echo "gpu-check: $*" >&2; }
elapsed() { echo $(($(date +%s) - START)); }
# JSON string of $1 (backslashes, quotes, control characters).
json_str() {
  local s
  s="$(printf '%s' "$1" | tr '\n\t\r' '   ' | tr -d '\000-\037')"
  s="${s//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '"%s"' "$s"
}
# The last line of file $1 when it is a JSON object, else null.
last_json() {
  local l
  l="$(grep -E '^\{.*\}$' "$1" 2>/dev/null | tail -1)"
  if [ -n "$l" ]; then printf '%s' "$l"; else printf 'null'; fi
}

# record NAME STATUS SECONDS RC RESULT_JSON MESSAGE
record() {
  STEP_NO=$((STEP_NO + 1))
  printf '{"step": %s, "status": %s, "seconds": %s, "rc": %s, "message": %s, "result": %s}\n' \
    "$(json_str "$1")" "$(json_str "$2")" "$3" "$4" "$(json_str "$6")" "$5" \
    > "$OUT/steps/$(printf '%02d' "$STEP_NO")-$1.json"
  printf '%s\t%s\t%s\n' "$2" "$3" "$(printf '%s' "$6" | tr '\n\t|' '  /' | cut -c1-200)" \
    > "$OUT/steps/$(printf '%02d' "$STEP_NO")-$1.meta"
  case "$2" in passed) ;; *) FAILED=1 ;; esac
  say "$1: $2 (${3}s)${6:+ — $6}"
}

# run NAME TIMEOUT_S CMD...: runs CMD with the step's timeout (cut to the budget left),
# its stdout+stderr in logs/NAME.log; passed when it exits 0 and its last JSON line (if
# any) has no "ok": false.
run() {
  local name="$1" want="$2"
  shift 2
  local left=$((BUDGET_S - $(elapsed) - 10))
  local log="$OUT/logs/$name.log"
  if [ "$left" -lt 5 ]; then
    record "$name" skipped 0 -1 null "out of time (BUDGET_S=$BUDGET_S)"
    return 1
  fi
  local t=$((want < left ? want : left))
  local s
  s=$(date +%s)
  # bash -c runs exported shell functions (the multi-command steps) as well as programs.
  timeout --kill-after=5 "$t" bash -c '"$@"' _ "$@" > "$log" 2>&1
  local rc=$?
  local secs=$(($(date +%s) - s))
  local result
  result="$(last_json "$log")"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    record "$name" timeout "$secs" "$rc" "$result" "timed out after ${t}s (log: logs/$name.log)"
    return 1
  elif [ "$rc" -ne 0 ]; then
    record "$name" failed "$secs" "$rc" "$result" "$(tail -3 "$log" | cut -c1-300)"
    return 1
  elif printf '%s' "$result" | grep -q '"ok": *false'; then
    record "$name" failed "$secs" "$rc" "$result" "parity outside the tolerance (log: logs/$name.log)"
    return 1
  fi
  record "$name" passed "$secs" "$rc" "$result" ""
}

# Peak GPU memory (MiB, nvidia-smi every 100 ms) over `run` of a step: sample NAME CMD...
sample() {
  local name="$1"
  shift
  local f="$OUT/logs/$name.memory"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$f" 2>/dev/null &
  local pid=$!
  run "$name" "$@"
  local rc=$?
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  local peak
  peak="$(sort -n "$f" 2>/dev/null | tail -1)"
  echo "${peak:-null}" > "$OUT/logs/$name.peak_mb"
  return $rc
}

write_summary() {
  local status="$1"
  local gpu="$2"
  {
    printf '{"status": %s, "date": %s, "seconds": %s, "budget_s": %s, "device": %s, "gpu": %s, "ld_library_path": %s,\n "steps": [\n' \
      "$(json_str "$status")" "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")" "$(elapsed)" "$BUDGET_S" \
      "$(json_str "$DEVICE")" "$gpu" "$(json_str "${LD_LIBRARY_PATH:-}")"
    local first=1
    for f in "$OUT"/steps/*.json; do
      [ -e "$f" ] || continue
      [ $first -eq 1 ] || printf ',\n'
      first=0
      local name peak
      name="$(basename "$f" .json)"
      name="${name#*-}"
      peak="$(cat "$OUT/logs/$name.peak_mb" 2>/dev/null || echo null)"
      # the step's object with the sampled peak memory
      sed -e "s/}\$/, \"peak_gpu_mb_nvidia_smi\": ${peak:-null}}/" "$f" | tr -d '\n'
    done
    printf '\n]}\n'
  } > "$OUT/summary.json"
  {
    echo "# gpu-check $(date -u +%Y-%m-%d\ %H:%M\ UTC): $status"
    echo
    echo "- GPU: $gpu"
    echo "- device: $DEVICE; run: $(elapsed) s of a $BUDGET_S s budget"
    echo "- LD_LIBRARY_PATH: \`${LD_LIBRARY_PATH:-}\`"
    echo
    echo "| step | status | s | peak GPU MiB (nvidia-smi) | message |"
    echo "|---|---|---|---|---|"
    for f in "$OUT"/steps/*.json; do
      [ -e "$f" ] || continue
      local name
      name="$(basename "$f" .json)"
      name="${name#*-}"
      local st secs msg peak
      IFS=$'\t' read -r st secs msg < "${f%.json}.meta"
      peak="$(cat "$OUT/logs/$name.peak_mb" 2>/dev/null || echo)"
      echo "| $name | $st | $secs | ${peak/null/} | $msg |"
    done
    echo
    echo "## Results (the last JSON line of each step)"
    for f in "$OUT"/steps/*.json; do
      [ -e "$f" ] || continue
      local name
      name="$(basename "$f" .json)"
      name="${name#*-}"
      echo
      echo "### $name"
      echo '```json'
      sed -E 's/.*"result": (.*)}$/\1/' "$f" | cut -c1-4000
      echo '```'
    done
  } > "$OUT/summary.md"
  SUMMARY_WRITTEN=1
  say "summary: $OUT/summary.json, $OUT/summary.md"
}

# Whatever stops the script (a bug, set -u), a summary is written.
SUMMARY_WRITTEN=0
GPU=null
on_exit() {
  local rc=$?
  if [ "$SUMMARY_WRITTEN" -eq 0 ]; then
    record script aborted "$(elapsed)" "$rc" null "gpu-check.sh stopped early (exit status $rc)"
    write_summary aborted "$GPU"
  fi
}
trap on_exit EXIT

# ---- 1. the device: a GPU and the driver library ----------------------------------
have_driver_lib() {
  ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1' && return 0
  local d
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/cuda/compat; do
    [ -e "$d/libcuda.so.1" ] && return 0
  done
  return 1
}
if command -v nvidia-smi > /dev/null 2>&1; then
  info="$(timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>&1 | head -1)"
  GPU="$(json_str "$info")"
  say "GPU: $info"
fi
if ! command -v nvidia-smi > /dev/null 2>&1 && ! have_driver_lib; then
  msg="no NVIDIA GPU here: nvidia-smi not found and no libcuda.so.1 (the NVIDIA driver) on the loader path; the cuda build cannot start without the driver, so nothing was run"
  say "$msg"
  record device no_gpu 0 3 null "$msg"
  write_summary no_gpu null
  exit 3
fi
if ! have_driver_lib; then
  msg="nvidia-smi is here but libcuda.so.1 is not on the loader path (ldconfig, /usr/local/nvidia/lib64): add the driver's folder to LD_LIBRARY_PATH"
  say "$msg"
fi
record device passed 0 0 "{\"gpu\": $GPU}" ""

# ---- 2. the CUDA 13 runtime libraries (cudart, cuBLAS, cuRAND) --------------------
# From PyTorch's nvidia cu13 wheels, /usr/local/cuda, and the driver's folder; never the
# link stub of the build machine.
libdirs=()
if command -v "$PY" > /dev/null 2>&1; then
  while IFS= read -r d; do [ -n "$d" ] && libdirs+=("$d"); done < <(
    "$PY" - 2>/dev/null <<'EOF'
import importlib.util, os
spec = importlib.util.find_spec("nvidia")
for root in (list(spec.submodule_search_locations) if spec else []):
    for sub in ("cu13/lib", "cublas/lib", "cuda_runtime/lib", "curand/lib"):
        p = os.path.join(root, sub)
        if os.path.isdir(p):
            print(p)
EOF
  )
fi
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  [ -d "$d" ] && libdirs+=("$d")
done
LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
for d in "${libdirs[@]}"; do
  case ":${LD_LIBRARY_PATH:-}:" in *":$d:"*) ;; *) LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d" ;; esac
done
export LD_LIBRARY_PATH
missing="$( { ldd "$CLI"; ldd "$CHECK"; } 2>&1 | grep -E 'not found|No such file' | sort -u | tr '\n' ' ')"
if [ -n "$missing" ] || [ ! -x "$CLI" ] || [ ! -x "$CHECK" ]; then
  msg="missing: ${missing:-the binaries under $BIN_DIR}; searched: ${LD_LIBRARY_PATH:-nothing} (install the CUDA 13 runtime, e.g. PyTorch+cu130, or set LD_LIBRARY_PATH)"
  record libraries failed 0 4 null "$msg"
  write_summary missing_libraries "$GPU"
  exit 4
fi
record libraries passed 0 0 null "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

# ---- 3. parity on the GPU ----------------------------------------------------------
export RUST_BACKTRACE=0
run ops 60 "$CHECK" ops --device "$DEVICE"
run head 60 "$CHECK" head --device "$DEVICE"
run backbones 90 "$CHECK" backbones --device "$DEVICE" --fixtures "$FIX/backbones"

# An imported reference checkpoint: predict --json on the GPU against expected.json.
reference() {
  local name dir out routing key rc=0
  for name in smallcnn_d3 smallcnn_d4_pruned_log smallcnn_d2_kontschieder_legacy; do
    dir="$FIX/reference/$name"
    out="$OUT/work/ref-$name"
    rm -rf "$out"
    local size
    size="$(grep -oE '"image_size": *[0-9]+' "$dir/expected.json" | grep -oE '[0-9]+$')"
    "$CLI" --quiet import --reference "$dir" --out "$out" --image-size "$size" || return 1
    local images=()
    while IFS= read -r p; do images+=("$dir/$p"); done < <(
      "$PY" -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["images"]))' "$dir/expected.json")
    for routing in soft greedy max-leaf; do
      key="${routing/-/_}"
      "$CLI" --quiet predict --model "$out" --json --routing "$routing" --device "$DEVICE" "${images[@]}" \
        > "$OUT/work/ref-$name-$routing.jsonl" || return 1
      "$PY" - "$dir/expected.json" "$OUT/work/ref-$name-$routing.jsonl" "$key" "$name $routing" <<'EOF' || rc=1
import json, sys
want = json.load(open(sys.argv[1]))[sys.argv[3]]
got = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
worst = max(abs(a - b) for g, w in zip(got, want["probabilities"]) for a, b in zip(g["probabilities"], w))
same = [g["class_index"] for g in got] == want["predictions"] and len(got) == len(want["probabilities"])
print(f"{sys.argv[4]}: max |p - p_ref| {worst:.2e}, predictions {'equal' if same else 'DIFFER'}")
sys.exit(0 if worst <= 1e-4 and same else 1)
EOF
    done
  done
  return $rc
}
DEMO="$OUT/work/demo"
export CLI FIX OUT PY DEVICE DEMO DEMO_EPOCHS
export -f reference
run reference 90 reference

# ---- 4. throughput: the training step, ours then PyTorch's --------------------------
TS=(--backbone resnet50 --size 224 --batch 64 --depth 9 --features 256 --classes 200)
sample train-step-ours 90 "$CHECK" train-step --device "$DEVICE" "${TS[@]}" --iters 5
sample train-step-pytorch 90 "$PY" "$ROOT/benches/reference/train_step.py" "${TS[@]}" --iters 5 --device cuda
HB=(--depth 9 --features 256 --fmap 7 --batch 64 --classes 200)
sample head-bench-ours 60 "$CHECK" head-bench --device "$DEVICE" "${HB[@]}" --iters 20
sample head-bench-pytorch 60 "$PY" "$ROOT/benches/reference/tree_head.py" "${HB[@]}" --iters 20 --device cuda

# ---- 5. the demo on the GPU, then every routing of predict and eval -----------------
rm -rf "$DEMO"
demo() {
  "$CLI" --quiet demo --out "$DEMO" --epochs "$DEMO_EPOCHS" --device "$DEVICE" || return 1
  # the summary (accuracies, seconds) as the step's result line
  "$PY" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$DEMO/summary.json"
}
routings() {
  local model="$DEMO/model" data="$DEMO/data" r imgs
  [ -d "$model" ] || { echo "no demo model at $model"; return 1; }
  mapfile -t imgs < <(find "$data" -name '*.png' | sort | head -8)
  for r in soft greedy max-leaf; do
    "$CLI" --quiet eval --model "$model" --data "$data" --routing "$r" --json --device "$DEVICE" || return 1
    "$CLI" --quiet predict --model "$model" --routing "$r" --json --device "$DEVICE" "${imgs[@]}" | tail -1 || return 1
  done
}
export CLI FIX OUT PY DEVICE DEMO DEMO_EPOCHS
export -f reference demo routings
sample demo 150 demo
[ -f "$DEMO/summary.json" ] && cp "$DEMO/summary.json" "$OUT/demo-summary.json"
run routings 60 routings

if [ "$FAILED" -eq 0 ]; then status=passed; else status=failed; fi
write_summary "$status" "$GPU"
exit "$FAILED"
