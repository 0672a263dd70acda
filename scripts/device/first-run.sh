#!/usr/bin/env bash
# Run THERE (a fresh GPU machine, in the repo root, with .debs carried): the first run of the GPU
# path in one call. Builds (prepare.sh), then, each phase within what is left of the budget:
#   tests     every gpu-labelled test (ctest -L gpu);
#   sanitize  compute-sanitizer memcheck over the kernel tests, racecheck over the kernels
#             that share memory between threads (LayerNorm, softmax, cross-entropy, AdamW's
#             sums, pooling);
#   smoke     the GPT-2 124M shape on the GPU in fp32 and in bf16 from the same seed (first
#             losses agree to 2% and are near ln V), then a small shape on the GPU in fp32
#             against the CPU for 5 steps (losses agree to 1e-4);
#   bench     scripts/bench-gpu.sh (ours against PyTorch with torch.compile).
# Writes $OUT/first-run/summary.txt (one line per phase: status, seconds, what it found) and a
# log per phase beside it; prints the summary at the end. A phase that would not fit in what is
# left of the budget is recorded as "skipped (budget)"; a phase that fails does not stop the
# next ones (the summary says what failed).
#
# Usage: scripts/device/first-run.sh [PHASE...]   (default: tests sanitize smoke bench)
# Environment: DPT_FIRST_RUN_BUDGET_S (default 540: one device call of 600 s with room to spare),
#   OUT (default /tmp/first-run-out), DPT_FIRST_RUN_SKIP_BUILD=1 (use BUILD_DIR as it is, for a
#   rerun on a warm machine or a dry run elsewhere), and prepare.sh's.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root" || exit 1
phases=("$@")
((${#phases[@]})) || phases=(tests sanitize smoke bench)
budget="${DPT_FIRST_RUN_BUDGET_S:-540}"
out="${OUT:-/tmp/first-run-out}/first-run"
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
t0=$SECONDS
left() { echo $((budget - (SECONDS - t0))); }
status() {  # status RC: ok, timeout or FAILED (rc N)
  case "$1" in
    0) echo ok ;;
    124) echo "FAILED (timeout)" ;;
    *) echo "FAILED (rc $1)" ;;
  esac
}
note() {  # note PHASE STATUS SECONDS TEXT
  printf '%-9s %-22s %5ss  %s\n' "$1" "$2" "$3" "$4" | tee -a "$summary"
}
# fits PHASE NEED: whether NEED seconds are left; records the skip when not.
fits() {
  if (($(left) < $2)); then
    note "$1" "skipped (budget)" 0 "needs about $2 s, $(left) s left of $budget"
    return 1
  fi
}

# --- build ----------------------------------------------------------------------------------
s=$SECONDS
targets=(train prepare-data cuda_device_test kernels_cuda_test gpt_cuda_test replica_cuda_test
         comm_nccl_test bench-attention)
if [[ ${DPT_FIRST_RUN_SKIP_BUILD:-0} != 1 ]]; then
  if ! scripts/device/prepare.sh "${targets[@]}" > "$out/build.log" 2>&1; then
    note build FAILED $((SECONDS - s)) "$(tail -1 "$out/build.log")"
    tail -40 "$out/build.log"
    cat "$summary"
    exit 1
  fi
  note build ok $((SECONDS - s)) "$(grep -m1 'CUDA path' "$out/build.log" | sed 's/^-- //')"
  # shellcheck disable=SC1090
  source "${DPT_ENV_FILE:-/tmp/dpt-env.sh}"
fi
build="${BUILD_DIR:-$root/build-device}"
bin="$build/bin"
gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
  head -1)"
if [[ -n $gpu ]]; then note device ok 0 "$gpu"; else note device FAILED 0 "nvidia-smi lists no GPU"; fi
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMP_NUM_THREADS=1

# --- phases ---------------------------------------------------------------------------------
phase_tests() {
  fits tests 90 || return 0
  local s=$SECONDS log="$out/tests.log" rc=0
  timeout $(($(left) - 10)) ctest --test-dir "$build" -L gpu --output-on-failure --timeout 240 \
    > "$log" 2>&1 || rc=$?
  local line
  line="$(grep -E 'tests passed|tests failed' "$log" | tail -1)"
  # The tests that did not pass, as "name: Failed; name: Skipped".
  local bad
  bad="$(grep -E '\*\*\*|Not Run' "$log" | sed -E 's/.*#[0-9]+: ([^ ]+) .*\*\*\*([A-Za-z]+).*/\1: \2/' |
    paste -sd';' -)"
  note tests "$(status "$rc")" $((SECONDS - s)) "${line:-no ctest summary}${bad:+ ($bad)}"
}

phase_sanitize() {
  fits sanitize 120 || return 0
  # On PATH, in a CUDA toolkit, or in NVIDIA's Python wheels (nvidia-cuda-sanitizer-api).
  local cs
  cs="$(command -v compute-sanitizer ||
    find /usr/local/cuda*/ /opt/nvidia* "$(python3 -c 'import site; print(site.getsitepackages()[0])' \
      2>/dev/null)/nvidia" -maxdepth 4 -name compute-sanitizer -type f -perm -u+x 2>/dev/null |
    head -1)"
  if [[ -z $cs ]]; then
    note sanitize "FAILED" 0 "no compute-sanitizer on PATH, under /usr/local/cuda* or in the nvidia wheels"
    return 0
  fi
  local s=$SECONDS rc=0 per=$((($(left) - 20) / 2))
  # memcheck: out-of-bounds and misaligned accesses, uninitialized device reads (initcheck is
  # a separate tool: the poisoned outputs of the tests already catch unwritten elements).
  timeout "$per" "$cs" --tool memcheck --leak-check full --error-exitcode 9 \
    "$bin/kernels_cuda_test" --gtest_brief=1 > "$out/memcheck.log" 2>&1 || rc=$?
  local mem
  mem="$(grep -m1 'ERROR SUMMARY' "$out/memcheck.log" || echo "no summary (rc $rc)")"
  note memcheck "$(status "$rc")" $((SECONDS - s)) "$mem"
  s=$SECONDS
  rc=0
  timeout "$per" "$cs" --tool racecheck --error-exitcode 9 "$bin/kernels_cuda_test" \
    --gtest_brief=1 \
    --gtest_filter='*LayerNorm*:*Softmax*:*Attention*:*CrossEntropy*:*AdamW*:*Pool*' \
    > "$out/racecheck.log" 2>&1 || rc=$?
  mem="$(grep -m1 'RACECHECK SUMMARY\|ERROR SUMMARY' "$out/racecheck.log" ||
    echo "no summary (rc $rc)")"
  note racecheck "$(status "$rc")" $((SECONDS - s)) "$mem"
}

# Token shards shared with bench-gpu.sh (DPT_BENCH_DATA): byte tokens, valid for any vocabulary.
bench_data() {
  local data="${DPT_BENCH_DATA:-/tmp/dpt-bench-data}"
  if ! compgen -G "$data/train/*.h5" > /dev/null; then
    mkdir -p "$out/text"
    python3 tests/words_corpus.py "$out/text" --files 4 --docs 400 --words 1000 --seed 7 &&
      "$bin/prepare-data" --out "$data" --overwrite --val-fraction 0 "$out/text"/*.jsonl \
        > "$out/prepare-data.log" 2>&1 || return 1
  fi
  echo "$data/train"
}

phase_smoke() {
  fits smoke 90 || return 0
  local s=$SECONDS data
  data="$(bench_data)" || { note smoke FAILED 0 "prepare-data failed: $out/prepare-data.log"; return 0; }
  local gpt2=(--vocab-size 50304 --seq-len 1024 --d-model 768 --n-layer 12 --n-head 12
              --micro-batch 4 --global-batch 4 --steps 3 --seed 11 --log-every 1)
  local d rc=0
  for d in fp32 bf16; do
    timeout 120 mpiexec -n 1 --bind-to none "$bin/train" --device cuda --dtype "$d" \
      --data "$data" "${gpt2[@]}" --metrics "$out/smoke-124m-$d.jsonl" \
      > "$out/smoke-124m-$d.log" 2>&1 || rc=$?
  done
  local verdict
  verdict="$(python3 - "$out/smoke-124m-fp32.jsonl" "$out/smoke-124m-bf16.jsonl" << 'EOF'
import json, math, sys
def first(path):
    try:
        rows = [json.loads(l) for l in open(path) if '"loss"' in l]
    except OSError:
        return None
    return rows[0]["loss"] if rows else None
a, b = first(sys.argv[1]), first(sys.argv[2])
if a is None or b is None or not math.isfinite(a) or not math.isfinite(b):
    print(f"FAILED: first losses fp32 {a}, bf16 {b}")
else:
    rel = abs(a - b) / abs(a)
    ok = rel < 0.02 and abs(a - math.log(50304)) < 1.0
    print(f"{'ok' if ok else 'FAILED'}: 124M first loss fp32 {a:.5f} bf16 {b:.5f} "
          f"(rel {rel:.2e}, ln V {math.log(50304):.3f})")
EOF
)"
  note smoke-124m "${verdict%%:*}$([[ $rc == 0 ]] || echo " (rc $rc)")" $((SECONDS - s)) \
    "${verdict#*: }"
  s=$SECONDS
  rc=0
  local small=(--vocab-size 257 --seq-len 64 --d-model 64 --n-layer 2 --n-head 4
               --micro-batch 4 --global-batch 8 --steps 5 --seed 11 --log-every 1 --threads 4)
  timeout 60 mpiexec -n 1 --bind-to none "$bin/train" --device cuda --dtype fp32 --data "$data" \
    "${small[@]}" --metrics "$out/smoke-gpu.jsonl" > "$out/smoke-gpu.log" 2>&1 || rc=$?
  timeout 60 mpiexec -n 1 --bind-to none "$bin/train" --device cpu --data "$data" "${small[@]}" \
    --metrics "$out/smoke-cpu.jsonl" > "$out/smoke-cpu.log" 2>&1 || rc=$?
  verdict="$(python3 - "$out/smoke-gpu.jsonl" "$out/smoke-cpu.jsonl" << 'EOF'
import json, sys
def steps(path):
    try:
        return [json.loads(l)["loss"] for l in open(path) if '"loss"' in l]
    except OSError:
        return []
g, c = steps(sys.argv[1]), steps(sys.argv[2])
if len(g) != 5 or len(c) != 5:
    print(f"FAILED: {len(g)} GPU and {len(c)} CPU steps logged, want 5 each")
else:
    rel = max(abs(x - y) / abs(y) for x, y in zip(g, c))
    print(f"{'ok' if rel < 1e-4 else 'FAILED'}: GPU fp32 vs CPU, 5 steps, largest relative "
          f"loss difference {rel:.2e} (bound 1e-4); last {g[-1]:.6f} vs {c[-1]:.6f}")
EOF
)"
  note smoke-cpu "${verdict%%:*}$([[ $rc == 0 ]] || echo " (rc $rc)")" $((SECONDS - s)) \
    "${verdict#*: }"
}

phase_bench() {
  fits bench 150 || return 0
  local s=$SECONDS rc=0
  local steps=20
  (($(left) < 240)) && steps=10
  OUT="$out" timeout $(($(left) - 5)) scripts/bench-gpu.sh --micro-batch 16 --steps "$steps" \
    --warmup 3 > "$out/bench.log" 2>&1 || rc=$?
  local row
  row="$(grep -A1 'ours tok/s' "$out/bench.log" | tail -1 | tr -s ' ')"
  note bench "$(status "$rc")" $((SECONDS - s)) \
    "${row:-$(tail -1 "$out/bench.log")} (batch, ours tok/s, torch tok/s, ratio, MFUs, ms)"
}

for p in "${phases[@]}"; do
  case "$p" in
    tests | sanitize | smoke | bench) "phase_$p" ;;
    *) note "$p" "unknown phase" 0 "phases: tests sanitize smoke bench" ;;
  esac
done
echo "first-run: $((SECONDS - t0)) s of a $budget s budget; logs in $out" | tee -a "$summary"
echo "----- summary -----"
cat "$summary"
! grep -q "FAILED" "$summary"
