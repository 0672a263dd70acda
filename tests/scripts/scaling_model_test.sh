#!/usr/bin/env bash
# scripts/scaling-model.py against synthetic traces and collectives built from known compute and
# an exact alpha-beta (synthetic_trace.py): a flat exchange costs the fitted all-reduce of the
# whole buffer, overlapped buckets expose less than flat and never a negative time, 1 GPU is
# 100% efficient, a 2-rank step made of known compute + known comm is predicted exactly on the
# CPU path (the exchange adds to the step) and within 1% on the GPU path (buckets overlap
# backward), the warm-up step is left out, the preset picks ring or tree as documented, and bad
# input ends with one message and exit 2.
set -euo pipefail
export PYTHONDONTWRITEBYTECODE=1  # leave no __pycache__ in the source tree
root="${DPT_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
py="${PYTHON:-/usr/bin/python3}"
model=("$py" "$root/scripts/scaling-model.py")
gen=("$py" "$root/tests/scripts/synthetic_trace.py")
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

alpha=20 busbw=5  # us, GB/s: the exact all-reduce of the collectives fixtures
"${gen[@]}" collectives "$work/mpi.jsonl" --backend mpi --alpha-us $alpha --busbw $busbw
"${gen[@]}" collectives "$work/nccl.jsonl" --backend nccl --alpha-us $alpha --busbw $busbw
"${gen[@]}" trace "$work/cpu1.json" > "$work/cpu1.txt"
"${gen[@]}" trace "$work/cpu2.json" --world-size 2 > "$work/cpu2.txt"
"${gen[@]}" trace "$work/gpu1.json" --device cuda --overlap > "$work/gpu1.txt"
"${gen[@]}" trace "$work/gpu2.json" --device cuda --overlap --world-size 2 > "$work/gpu2.txt"

# 1. predict on the trace's own shape: flat = the whole buffer's all-reduce at the fit; buckets
# expose less than flat, never below zero; 1 GPU is 100%.
"${model[@]}" predict --trace "$work/gpu1.json" --collectives "$work/nccl.jsonl" --shapes trace \
  --gpus 1,2,4,8 --bucket-mb 0,0.05,0.25,1 --out-csv "$work/own.csv" --out-md "$work/own.md" \
  > "$work/own.txt"
"$py" - "$work/own.csv" "$work/gpu1.txt" $alpha $busbw <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
known = json.load(open(sys.argv[2]))
alpha, busbw = float(sys.argv[3]), float(sys.argv[4])
assert len(rows) == 4 * 4, len(rows)
flat = {}
for r in rows:
    n, mb = int(r["gpus"]), float(r["bucket_mb"])
    step, exposed, eff = float(r["step_ms"]), float(r["exposed_ms"]), float(r["efficiency_pct"])
    assert exposed >= 0, r
    if n == 1:
        assert abs(eff - 100) < 1e-9 and exposed == 0, r
        assert abs(step - known["compute_ms"]) < 1e-6 * known["compute_ms"], (r, known)
    if mb == 0:
        want = (alpha + 4 * known["params"] * 2 * (n - 1) / n / (busbw * 1e3)) / 1e3 if n > 1 else 0
        assert abs(exposed - want) <= 1e-6 * max(want, 1e-9), (r, want)
        flat[n] = exposed
for r in rows:
    n, mb = int(r["gpus"]), float(r["bucket_mb"])
    if n > 1 and mb > 0:
        assert float(r["exposed_ms"]) < flat[n], (r, flat[n])
        assert 0 < float(r["hidden_pct"]) <= 100, r
print(f"flat exposed = fitted all-reduce of {known['params']} params; buckets expose less")
PY
grep -q '^verdict: 124M at 1024 GPUs' "$work/own.txt" || fail "no verdict line"
[[ $(grep -c '^| trace' "$work/own.md") -eq 16 ]] || fail "markdown table rows"

# 2. validate: known compute + known comm on 2 ranks (the exit status says whether it is within
# the tolerance). On the CPU path the step is compute + every bucket's all-reduce, which the
# model must get exactly (0.001%), at buckets below and above the 1 MiB first bucket and with
# gradient accumulation (only the last micro-batch exchanges); on the GPU path the compute
# stream has no per-block spans, so backward is split by FLOPs: within 1%.
for case in "0.05 1" "2 1" "0.05 3"; do
  read -r mb accum <<< "$case"
  "${gen[@]}" trace "$work/c1.json" --bucket-mb "$mb" --accum "$accum" > /dev/null
  "${gen[@]}" trace "$work/c2.json" --bucket-mb "$mb" --accum "$accum" --world-size 2 > /dev/null
  "${model[@]}" validate --trace "$work/c1.json" --collectives "$work/mpi.jsonl" \
    --measured "$work/c2.json" --tolerance 0.001 > "$work/val_cpu.txt" ||
    { cat "$work/val_cpu.txt"; fail "CPU path, $mb MiB buckets, accumulation $accum: not exact"; }
done
grep -q "alpha 20.0 us, busbw 5.00 GB/s" "$work/val_cpu.txt" || fail "the fit of the fixture"
"${model[@]}" validate --trace "$work/gpu1.json" --collectives "$work/nccl.jsonl" \
  --measured "$work/gpu2.json" --tolerance 1 > "$work/val_gpu.txt" ||
  { cat "$work/val_gpu.txt"; fail "GPU path (overlap) not within 1%"; }
grep -q 'overlap efficiency 0' "$work/val_cpu.txt" || fail "an MPI fit should not overlap"
step2=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["step_ms"])' "$work/cpu2.txt")
"${model[@]}" validate --trace "$work/cpu1.json" --collectives "$work/mpi.jsonl" \
  --measured-step-ms "$step2" --ranks 2 --tolerance 1 > /dev/null || fail "--measured-step-ms"
# A measured step far from the prediction fails the check (exit 1, not 2).
set +e
"${model[@]}" validate --trace "$work/cpu1.json" --collectives "$work/mpi.jsonl" \
  --measured-step-ms 1000 > "$work/far.txt" 2>&1
rc=$?
set -e
if [[ $rc -ne 1 ]] || ! grep -q OUTSIDE "$work/far.txt"; then
  fail "a 1000 ms measurement passed (rc $rc)"
fi

# 3. The warm-up step 1 is left out: traced steps 1-2, step 1 three times slower.
"${gen[@]}" trace "$work/warm.json" --steps 2 > "$work/warm.txt"
"${model[@]}" predict --trace "$work/warm.json" --collectives "$work/mpi.jsonl" --shapes trace \
  --gpus 1 --bucket-mb 0 --out-csv "$work/warm.csv" > /dev/null
"$py" - "$work/warm.csv" "$work/warm.txt" <<'PY'
import csv, json, sys
row = next(csv.DictReader(open(sys.argv[1])))
want = json.load(open(sys.argv[2]))["compute_ms"]
assert abs(float(row["step_ms"]) - want) < 1e-6 * want, (row["step_ms"], want)
PY

# 4. Missing optional spans (no block, head or embedding spans): the model still predicts.
"${gen[@]}" trace "$work/bare.json" --no-parts > /dev/null
"${model[@]}" validate --trace "$work/bare.json" --collectives "$work/mpi.jsonl" \
  --measured "$work/cpu2.json" --tolerance 1 > /dev/null || fail "trace without block spans"

# 5. The named shapes on the H100 preset, from FLOPs alone, with the plot.
png=()
if "$py" -c 'import matplotlib' 2> /dev/null; then png=(--out-png "$work/scaling.png"); fi
"${model[@]}" predict --network h100-ib --mfu 0.4 --micro-batch 8 \
  --gpus 1,8,64,1024 --bucket-mb 0,25 --out-csv "$work/h100.csv" "${png[@]}" > "$work/h100.txt"
[[ $(wc -l < "$work/h100.csv") -eq $((1 + 3 * 4 * 2)) ]] || fail "h100 CSV rows"
# At 25 MiB what is left is the tied embedding, final only at the end of backward; at 1 MiB the
# latency of hundreds of buckets.
grep -q '^verdict: 124M at 1024 GPUs (8 per node), 25 MiB.*wte.*cannot overlap' "$work/h100.txt" ||
  fail "verdict at 25 MiB: $(tail -1 "$work/h100.txt")"
"${model[@]}" predict --network h100-ib --mfu 0.4 --micro-batch 8 --shapes 124M --gpus 1,1024 \
  --bucket-mb 1 | grep -q '^verdict: .* 1 MiB buckets .*not met; latency-bound' ||
  fail "1 MiB buckets at 1024 GPUs should be latency-bound"
if ((${#png[@]})); then
  [[ $(head -c 8 "$work/scaling.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
    fail "not a PNG"
else
  echo "note: matplotlib not importable by $py; the plot was not checked"
fi

# 6. The preset's all-reduce: one node is a ring over NVLink; across nodes reduce-scatter and
# all-gather in the node around an all-reduce of 1/8 of the bytes over InfiniBand by ring or
# tree, whichever is faster (the tree for small messages over many nodes, the ring for large
# messages over few); cost grows with bytes and GPUs.
"$py" - "$root/scripts/scaling-model.py" <<'PY'
import importlib.util, math, sys
spec = importlib.util.spec_from_file_location("scaling_model", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
net = m.H100InfiniBand(8)
S = 100 * 2**20
one_node = m.COLL_BASE_US + 14 * m.NVLINK_HOP_US + 1.75 * S / (m.NVLINK_BUSBW_GBPS * 1e3)
assert math.isclose(net.cost_us(S, 8), one_node), (net.cost_us(S, 8), one_node)
assert net.cost_us(S, 1) == 0
def parts(nbytes, n):
    k, g = n // 8, 8
    intra = 2 * ((g - 1) * m.NVLINK_HOP_US + nbytes * (g - 1) / g / (m.NVLINK_BUSBW_GBPS * 1e3))
    s = nbytes / g
    ring = 2 * (k - 1) * m.IB_RING_HOP_US + 2 * (k - 1) / k * s / (m.IB_BW_GBPS * 1e3)
    tree = 2 * math.log2(k) * m.IB_TREE_HOP_US + 2 * s / (m.TREE_BW_EFFICIENCY * m.IB_BW_GBPS * 1e3)
    return m.COLL_BASE_US + intra, ring, tree
base, ring, tree = parts(2**20, 4096)
assert tree < ring and math.isclose(net.cost_us(2**20, 4096), base + tree), "small: tree"
base, ring, tree = parts(2**30, 16)
assert ring < tree and math.isclose(net.cost_us(2**30, 16), base + ring), "large, 2 nodes: ring"
for n in (2, 8, 16, 1024):
    assert net.cost_us(2**20, n) < net.cost_us(2**24, n) < net.cost_us(2**24, 2 * n)
# The bucket plan tiles the buffer from its end: 1 MiB first, then the bucket size.
plan = m.plan_buckets(10_000_000, 25 * 2**20)
assert plan[0] == (10_000_000 - 2**18, 2**18) and plan[1][1] == 25 * 2**18, plan[:2]
assert sum(c for _, c in plan) == 10_000_000 and plan[-1][0] == 0
assert m.plan_buckets(1000, 0) == [(0, 1000)]
print("preset all-reduce and bucket plan as documented")
PY

# 7. Bad input: one message, exit 2.
printf '{"traceEvents": [], "otherData": {"micro_batch": 1, "model": %s}}' \
  '{"vocab_size": 8, "seq_len": 4, "d_model": 4, "n_layer": 1}' > "$work/nosteps.json"
echo '{"backend": "mpi", "op": "all_reduce"' > "$work/broken.jsonl"
expect_usage() {  # expect_usage WHAT ARGS...: exit 2 and a one-line reason on stderr
  local what=$1 rc=0
  shift
  "${model[@]}" "$@" > "$work/out.txt" 2> "$work/err.txt" || rc=$?
  [[ $rc -eq 2 ]] || fail "$what: exit $rc, want 2"
  grep -q "$what" "$work/err.txt" || fail "$what: message was '$(cat "$work/err.txt")'"
}
expect_usage "No such file" predict --trace "$work/absent.json" --network h100-ib
expect_usage "no step spans" predict --trace "$work/nosteps.json" --network h100-ib
expect_usage "broken.jsonl:1" predict --trace "$work/cpu1.json" --collectives "$work/broken.jsonl"
expect_usage "unknown shape" predict --trace "$work/cpu1.json" --network h100-ib --shapes 7B
expect_usage "give --collectives" predict --trace "$work/cpu1.json"
expect_usage "overlap-efficiency" predict --trace "$work/cpu1.json" --network h100-ib \
  --overlap-efficiency 2
expect_usage "needs --trace" predict --network h100-ib
expect_usage "no such directory" predict --network h100-ib --mfu 0.4 --out-png "$work/no/x.png"
expect_usage "not valid JSON" validate --trace "$work/broken.jsonl" --network h100-ib \
  --measured-step-ms 5
expect_usage "required" validate --trace "$work/cpu1.json" --network h100-ib
echo "scaling_model_test: passed"
