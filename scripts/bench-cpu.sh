#!/usr/bin/env bash
# CPU path benchmark: step time and tokens/s of a fixed small model on 1 and 2 ranks (one
# thread per rank, micro-batch 8 per rank, so 2 ranks process twice the global batch: weak
# scaling), the weak-scaling efficiency, and the achieved model FLOP rate next to this
# machine's own sgemm rate measured in the same run (bench-gemm, one thread).
# Usage: scripts/bench-cpu.sh [steps]   (builds first if needed)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
steps="${1:-40}"
[[ -x $build/bin/train && -x $build/bin/bench-gemm ]] || "$root/scripts/build.sh"
data="$root/data/fortunes.txt"
[[ -s $data ]] || "$root/scripts/fortunes-corpus.sh" "$data" >/dev/null
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

T=128 C=128 L=4 NH=4 b=8
model=(--seq-len $T --d-model $C --n-layer $L --n-head $NH --micro-batch $b)
run() {  # run RANKS
  local n=$1
  mpiexec -n "$n" --bind-to none --oversubscribe "$build/bin/train" --data "$data" "${model[@]}" \
    --global-batch $((n * b)) --steps "$steps" --threads 1 --log-every 1000 \
    --metrics "$work/r$n.jsonl" > "$work/r$n.log"
}
echo "bench-cpu: model T=$T C=$C L=$L NH=$NH, micro-batch $b/rank, $steps steps, 1 thread/rank" >&2
run 1
run 2
# The model's largest products: (b*T) x 4C x C.
gemm_gflops=$("$build/bin/bench-gemm" $((b * T)) $((4 * C)) $C 1 20)

python3 - "$work" "$gemm_gflops" $T $C $L <<'PY'
import json, statistics, sys
work, gemm, T, C, L = sys.argv[1], float(sys.argv[2]), *map(int, sys.argv[3:])
V = 256
n_params = V*C + T*C + L*(12*C*C + 13*C) + 2*C
flops_tok = 6*n_params + 6*L*C*T
def load(n):
    rows = [json.loads(l) for l in open(f"{work}/r{n}.jsonl")]
    rows = rows[5:] if len(rows) > 10 else rows          # skip warm-up steps
    ms = statistics.median(r["step_ms"] for r in rows)
    tps = statistics.median(r["tokens_per_s"] for r in rows)
    return ms, tps
ms1, t1 = load(1)
ms2, t2 = load(2)
eff = t2 / (2 * t1)
print(f"{'ranks':>5} {'step ms':>9} {'tok/s':>9} {'GFLOP/s/rank':>13} {'vs sgemm':>9}")
for n, ms, t in ((1, ms1, t1), (2, ms2, t2)):
    g = flops_tok * t / n / 1e9
    print(f"{n:>5} {ms:>9.1f} {t:>9.0f} {g:>13.2f} {g/gemm:>9.2f}")
print(f"weak-scaling efficiency (2 ranks vs 2 x 1 rank): {eff:.2f}")
print(f"peer: sgemm {C*4}x{C} on {8*T} rows, 1 thread: {gemm:.2f} GFLOP/s")
PY
