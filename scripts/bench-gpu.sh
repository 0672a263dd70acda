#!/usr/bin/env bash
# GPU benchmark: dptrain's CUDA path against PyTorch on the same device in the same run, on the
# GPT-2 small shape (12 layers, 12 heads, 768 wide, seq 1024, vocab 50304), bf16 compute over
# fp32 master weights, one GPU. Prints tokens/s, step time and MFU (llm.c's count: flops per
# token = 6*N + 6*L*C*T, against the device's dense bf16 peak) and the ratio ours/PyTorch.
#
# Usage: scripts/bench-gpu.sh [--micro-batch "16"] [--steps 30] [--warmup 5] [--no-torch]
#   --micro-batch takes one size or a quoted list ("8 16 32"); each is run by both.
# Environment: BUILD_DIR (default build-device/ when it exists, else build/), MPIEXEC,
#   DPT_BENCH_DATA (cached token shards, default /tmp/dpt-bench-data), DPT_PEAK_TFLOPS (override
#   the peak), OUT (when set, the JSON results are written to $OUT/bench-gpu.json).
# Then, when built, bench-attention: fused and unfused attention at the same shape, forward and
# backward, against cuBLAS's time for the same products.
# Exit codes: 0 done, 2 no CUDA device or missing binaries, 1 a run failed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
batches="16" steps=30 warmup=5 torch=1
while (($#)); do
  case "$1" in
    --micro-batch) batches="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --no-torch) torch=0; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench-gpu: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# --- the device -----------------------------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null || ! gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)" || [[ -z $gpu ]]; then
  echo "bench-gpu: no CUDA device (nvidia-smi is missing or lists no GPU); this benchmark needs one" >&2
  exit 2
fi
# Dense bf16 tensor-core peaks from NVIDIA's datasheets (TFLOP/s, without sparsity).
case "$gpu" in
  *H200*|*H100*SXM*|*"H100 80GB HBM3"*) peak=989 ;;
  *H100*NVL*) peak=835 ;;
  *H100*PCIe*) peak=756 ;;
  *A100*) peak=312 ;;
  *) peak=0 ;;
esac
peak="${DPT_PEAK_TFLOPS:-$peak}"
[[ $peak != 0 ]] || echo "bench-gpu: unknown peak for '$gpu': MFU not shown (set DPT_PEAK_TFLOPS)" >&2

# --- binaries and data ------------------------------------------------------------------------------
if [[ -z ${BUILD_DIR:-} ]]; then
  BUILD_DIR="$root/build"
  [[ -d $root/build-device ]] && BUILD_DIR="$root/build-device"
fi
bin="$BUILD_DIR/bin"
for b in train prepare-data; do
  [[ -x $bin/$b ]] || { echo "bench-gpu: $bin/$b not built (on a device machine: scripts/device/prepare.sh train prepare-data)" >&2; exit 2; }
done
mpiexec="${MPIEXEC:-mpiexec}"
command -v "$mpiexec" >/dev/null ||
  { echo "bench-gpu: no $mpiexec on PATH (on a device machine: source /tmp/dpt-env.sh)" >&2; exit 2; }
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Token shards: ~8 MB of random-word text (tests/words_corpus.py) is enough for every step
# of the largest batch; byte tokens (< 257) are valid ids of the 50304-entry vocabulary.
data="${DPT_BENCH_DATA:-/tmp/dpt-bench-data}"
if ! compgen -G "$data/train/*.h5" >/dev/null; then
  mkdir -p "$work/text"
  python3 "$root/tests/words_corpus.py" "$work/text" --files 4 --docs 400 --words 1000 --seed 7
  "$bin/prepare-data" --out "$data" --overwrite --val-fraction 0 "$work/text"/*.jsonl >"$work/prepare.log" ||
    { cat "$work/prepare.log" >&2; exit 1; }
fi

V=50304 T=1024 C=768 L=12 NH=12
echo "bench-gpu: $gpu, GPT-2 small (L=$L C=$C NH=$NH T=$T V=$V) bf16, micro-batch(es) $batches, $warmup warm-up + $steps timed steps" >&2

for b in $batches; do
  echo "bench-gpu: ours, micro-batch $b" >&2
  if ! "$mpiexec" -n 1 --bind-to none "$bin/train" --device cuda --dtype bf16 --data "$data/train" \
      --vocab-size $V --seq-len $T --d-model $C --n-layer $L --n-head $NH \
      --micro-batch "$b" --global-batch "$b" --steps $((warmup + steps)) --log-every 1000000 \
      --metrics "$work/ours_$b.jsonl" >"$work/ours_$b.log" 2>&1; then
    tail -20 "$work/ours_$b.log" >&2
    echo "bench-gpu: ours failed at micro-batch $b (log above)" >&2
    exit 1
  fi
  if ((torch)); then
    echo "bench-gpu: PyTorch, micro-batch $b (torch.compile takes about a minute)" >&2
    # PyTorch runs with the image's own library path: the Debian libraries of the device prefix
    # (scripts/device/prepare.sh) must not shadow the ones its wheels were built against.
    if ! LD_LIBRARY_PATH="${DPT_ORIG_LD_LIBRARY_PATH-${LD_LIBRARY_PATH-}}" PYTHONUNBUFFERED=1 \
        python3 "$root/scripts/bench_gpu_torch.py" --micro-batch "$b" --steps "$steps" \
        --warmup "$warmup" --vocab-size $V --seq-len $T --d-model $C --n-layer $L --n-head $NH \
        --json "$work/torch_$b.json" >"$work/torch_$b.log" 2>&1; then
      tail -20 "$work/torch_$b.log" >&2
      echo "bench-gpu: PyTorch failed at micro-batch $b (log above)" >&2
      exit 1
    fi
  fi
done

python3 - "$work" "$warmup" "$peak" "$gpu" "$V" "$T" "$C" "$L" "$batches" "${OUT:-}" <<'PY'
import json, os, re, statistics, sys
work, warmup, peak, gpu = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) * 1e12, sys.argv[4]
V, T, C, L = map(int, sys.argv[5:9])
batches, out = [int(b) for b in sys.argv[9].split()], sys.argv[10]
# trainer/param_layout.cpp: wte V*C, wpe T*C, per layer 12C^2 + 13C, final LayerNorm 2C.
n_params = V*C + T*C + L*(12*C*C + 13*C) + 2*C
flops_tok = 6*n_params + 6*L*C*T
mfu = lambda tps: f"{100 * tps * flops_tok / peak:.1f}%" if peak > 0 else "-"

rows = []
for b in batches:
    steps = [json.loads(l) for l in open(f"{work}/ours_{b}.jsonl")]
    steps = [r for r in steps if "step_ms" in r][warmup:]
    said = re.search(r"([0-9.]+)M parameters", open(f"{work}/ours_{b}.log").read())
    if said and abs(float(said.group(1)) * 1e6 - n_params) > 1e3:
        print(f"warning: train reports {said.group(1)}M parameters, this script counts {n_params}",
              file=sys.stderr)
    ours = {"step_ms": statistics.median(r["step_ms"] for r in steps),
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steps),
            "final_loss": steps[-1]["loss"], "steps": len(steps)}
    torch = None
    if os.path.exists(f"{work}/torch_{b}.json"):
        torch = json.load(open(f"{work}/torch_{b}.json"))
        if torch["params"] != n_params:
            print(f"warning: PyTorch model has {torch['params']} parameters, ours {n_params}",
                  file=sys.stderr)
    rows.append({"micro_batch": b, "ours": ours, "torch": torch})

print(f"\n{gpu} | GPT-2 small, {n_params/1e6:.2f}M parameters, {flops_tok/1e9:.3f} GFLOP/token"
      f" | peak bf16 {peak/1e12:.0f} TFLOP/s | medians of the timed steps")
print(f"{'batch':>5} {'ours tok/s':>11} {'torch tok/s':>12} {'ours/torch':>10} {'ours MFU':>9}"
      f" {'torch MFU':>10} {'ours ms':>8} {'torch ms':>9}")
fmt = lambda v, spec: "-" if v is None else format(v, spec)
for r in rows:
    o, t = r["ours"], r["torch"]
    tt = t["tokens_per_s"] if t else None
    ratio = o["tokens_per_s"] / tt if tt else None
    r["ratio_ours_torch"] = ratio
    print(f"{r['micro_batch']:>5} {o['tokens_per_s']:>11.0f} {fmt(tt, '.0f'):>12} {fmt(ratio, '.2f'):>10}"
          f" {mfu(o['tokens_per_s']):>9} {mfu(tt) if tt else '-':>10} {o['step_ms']:>8.1f}"
          f" {fmt(t['step_ms'] if t else None, '.1f'):>9}")
summary = {"device": gpu, "params": n_params, "flops_per_token": flops_tok, "peak_flops": peak,
           "rows": rows}
if out:
    with open(os.path.join(out, "bench-gpu.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"written {os.path.join(out, 'bench-gpu.json')}")
PY

# Attention alone, at the same shape: fused and unfused against the products' time.
if [[ -x $bin/bench-attention ]]; then
  "$bin/bench-attention" "${batches%% *}" $T $NH $((C / NH)) 20 ||
    echo "bench-gpu: bench-attention failed (exit $?)" >&2
fi
