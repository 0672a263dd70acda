#!/usr/bin/env bash
# CPU path benchmark: step time and tokens/s of a fixed small model on 1 and 2 ranks (one
# thread per rank, micro-batch 8 per rank, so 2 ranks process twice the global batch: weak
# scaling), the weak-scaling efficiency, one rank with 2 threads on the same global batch as
# 2 ranks (ranks or threads?), and the achieved model FLOP rate next to this machine's own
# sgemm rate measured in the same run (bench-gemm, one thread); then the same model and batch in
# PyTorch on the CPU (scripts/bench_cpu_torch.py, Debian's python3-torch) on 1 and 2 threads,
# ours beside it (1 rank with 1 and 2 threads) and the ratio of step times.
# Usage: scripts/bench-cpu.sh [steps]   (builds first if needed; NO_TORCH=1 skips PyTorch)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
steps="${1:-40}"
[[ -x $build/bin/train && -x $build/bin/bench-gemm ]] || "$root/scripts/build.sh"
corpus="$root/data/fortunes"
[[ -d $corpus/train ]] || BUILD_DIR="$build" "$root/scripts/fortunes-corpus.sh" "$corpus" >/dev/null
data="$corpus/train"
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

T=128 C=128 L=4 NH=4 b=8
model=(--seq-len $T --d-model $C --n-layer $L --n-head $NH --micro-batch $b)
run() {  # run NAME RANKS THREADS GLOBAL_BATCH
  mpiexec -n "$2" --bind-to none --oversubscribe "$build/bin/train" --data "$data" "${model[@]}" \
    --global-batch "$4" --steps "$steps" --threads "$3" --log-every 1000 \
    --metrics "$work/$1.jsonl" > "$work/$1.log"
}
echo "bench-cpu: model T=$T C=$C L=$L NH=$NH, micro-batch $b/rank, $steps steps" >&2
run r1 1 1 $b
run r2 2 1 $((2 * b))
run t2 1 2 $((2 * b))
run t2b 1 2 $b
torch=0
if [[ ${NO_TORCH:-0} != 1 ]]; then
  if /usr/bin/python3 -c 'import torch' 2> /dev/null; then
    torch=1
    for th in 1 2; do
      /usr/bin/python3 "$root/scripts/bench_cpu_torch.py" --threads $th --steps "$steps" \
        --micro-batch $b --seq-len $T --d-model $C --n-layer $L --n-head $NH \
        --json "$work/torch_$th.json" > "$work/torch_$th.log" 2>&1 ||
        { cat "$work/torch_$th.log" >&2; exit 1; }
    done
  else
    echo "bench-cpu: no PyTorch (apt-get install python3-torch): its rows are left out" >&2
  fi
fi
# The model's largest products: (b*T) x 4C x C.
gemm_gflops=$("$build/bin/bench-gemm" $((b * T)) $((4 * C)) $C 1 20)

python3 - "$work" "$gemm_gflops" $T $C $L $torch <<'PY'
import json, statistics, sys
work, gemm, T, C, L, torch = sys.argv[1], float(sys.argv[2]), *map(int, sys.argv[3:])
V = 257
n_params = V*C + T*C + L*(12*C*C + 13*C) + 2*C
flops_tok = 6*n_params + 6*L*C*T
def load(name):
    rows = [json.loads(l) for l in open(f"{work}/{name}.jsonl")]
    rows = rows[5:] if len(rows) > 10 else rows          # skip warm-up steps
    ms = statistics.median(r["step_ms"] for r in rows)
    tps = statistics.median(r["tokens_per_s"] for r in rows)
    return ms, tps
ms1, t1 = load("r1")
ms2, t2 = load("r2")
mst, tt = load("t2")
eff = t2 / (2 * t1)
print(f"{'ranks x threads':>15} {'batch':>6} {'step ms':>9} {'tok/s':>9} {'GFLOP/s/core':>13} {'vs sgemm':>9}")
for label, batch, cores, ms, t in (("1 x 1", 8, 1, ms1, t1), ("2 x 1", 16, 2, ms2, t2),
                                   ("1 x 2", 16, 2, mst, tt)):
    g = flops_tok * t / cores / 1e9
    print(f"{label:>15} {batch:>6} {ms:>9.1f} {t:>9.0f} {g:>13.2f} {g/gemm:>9.2f}")
print(f"weak-scaling efficiency (2 ranks vs 2 x 1 rank): {eff:.2f}")
print(f"2 ranks x 1 thread vs 1 rank x 2 threads on the same batch: {t2/tt:.2f}x")
print(f"peer: sgemm {C*4}x{C} on {8*T} rows, 1 thread: {gemm:.2f} GFLOP/s")
if torch:
    ms2b, _ = load("t2b")
    print(f"\nagainst PyTorch, same model and micro-batch 8, 1 rank (goal: ours/torch <= 0.80)")
    print(f"{'threads':>7} {'ours ms':>9} {'torch ms':>9} {'ours/torch':>11} {'torch':>8}")
    for th, ours in ((1, ms1), (2, ms2b)):
        t = json.load(open(f"{work}/torch_{th}.json"))
        print(f"{th:>7} {ours:>9.1f} {t['step_ms']:>9.1f} {ours / t['step_ms']:>11.2f} {t['torch']:>8}")
PY
