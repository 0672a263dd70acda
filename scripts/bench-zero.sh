#!/usr/bin/env bash
# [ZeRO] benchmark on the CPU path: one model of about 36M parameters trained with --zero 0, 1
# and 2 on 1, 2 and 4 ranks (1 thread each). For every run: the per-rank state (parameters,
# gradients, AdamW moments) that the formulas give, that the memory plan printed before
# allocating, and that the run measured (mem_state_bytes: the buffers' sizes, the gradient by its
# resident pages at their peak; the largest rank), the process's peak resident set, the median
# step time, and the bytes rank 0 sent per step (sent_bytes, [Bytes sent]) beside the formula.
#
# Formulas, fp32 on the CPU, Psi parameters, N ranks, A micro-batches per rank and step:
#   state: stage 0  16 Psi;  stage 1  8 Psi + 8 Psi/N;  stage 2  4 Psi + 12 Psi/N (DeepSpeed's
#          accounting; a stage-2 rank also holds the gradient backward has written and not yet
#          reduced: the embeddings and about two buckets or blocks, which the plan adds)
#   bytes sent per rank and step: stage 0 and 1  2 (N-1)/N 4 Psi (all-reduce, or reduce-scatter
#          plus all-gather); stage 2  (A + 1) (N-1)/N 4 Psi (a reduce-scatter per micro-batch)
#
# The 2-rank stage 0 and stage 1 runs repeat REPEATS times (default 3), interleaved, so that the
# step-time comparison can be read against its own spread; the rest run once. Figures are
# medians over the steps after the first two of each run. 2 cores: 4 ranks share them, so the
# 4-rank step times measure the memory and the bytes, not speed.
#
# Usage: scripts/bench-zero.sh [steps]   (builds first if needed; steps default 8)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
steps="${1:-8}"
repeats="${REPEATS:-3}"
py="${PYTHON:-/usr/bin/python3}"
[[ -x $build/bin/train ]] || "$root/scripts/build.sh"
corpus="$root/data/fortunes"
[[ -d $corpus/train ]] || BUILD_DIR="$build" "$root/scripts/fortunes-corpus.sh" "$corpus" >/dev/null
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMP_NUM_THREADS=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 20 blocks of d_model 384: about 35.6M parameters, a 142 MB fp32 gradient; 5 MiB buckets, so
# that a bucket is smaller than a block and stage 2's unreduced gradient stays small.
model=(--seq-len 64 --d-model 384 --n-layer 20 --n-head 6 --global-batch 8 --micro-batch 1
       --lr 1e-4 --bucket-mb 5)
run() {  # run NAME RANKS ZERO
  local name=$1 ranks=$2 zero=$3
  echo "bench-zero: $name ($ranks rank(s), --zero $zero)" >&2
  mpiexec -n "$ranks" --bind-to none --oversubscribe "$build/bin/train" --data "$corpus/train" \
    "${model[@]}" --steps "$steps" --threads 1 --log-every 1000 --zero "$zero" \
    --metrics "$work/$name.jsonl" > "$work/$name.log"
}
for ((k = 1; k <= repeats; k++)); do
  run "n2z0.$k" 2 0
  run "n2z1.$k" 2 1
done
run n2z2.1 2 2
for n in 1 4; do
  for z in 0 1 2; do run "n${n}z${z}.1" "$n" "$z"; done
done

"$py" - "$work" "$repeats" <<'PY'
import glob, json, re, statistics, sys
work, repeats = sys.argv[1], int(sys.argv[2])
UNITS = {"MiB": 2**20, "GiB": 2**30}
def runs(name):
    return sorted(glob.glob(f"{work}/{name}.*.jsonl"))
def rows_of(path):
    rows = [json.loads(l) for l in open(path) if '"loss"' in l]
    return rows[2:] if len(rows) > 3 else rows  # warm-up steps out
def log_of(path):
    return open(path.replace(".jsonl", ".log")).read()
def planned_state(log):
    m = re.search(r"memory per rank: parameters ([\d.]+) (\w+), gradients ([\d.]+) (\w+), "
                  r"optimizer state ([\d.]+) (\w+)", log)
    v = m.groups()
    return sum(float(v[i]) * UNITS[v[i + 1]] for i in (0, 2, 4))
m_layout = re.search(r"owns parameters \[\d+, (\d+)\)", log_of(runs("n1z1")[0]))
psi = int(m_layout.group(1))  # one rank owns all of them
global_batch = 8
def formula_state(z, n):
    return {0: 16 * psi, 1: 8 * psi + 8 * psi / n, 2: 4 * psi + 12 * psi / n}[z]
def formula_sent(z, n):
    a = global_batch // n  # micro-batches per rank and step
    return (a + 1 if z == 2 else 2) * (n - 1) / n * 4 * psi
mib = 2**20
print(f"model: {psi / 1e6:.2f}M parameters (Psi), fp32; {len(rows_of(runs('n1z0')[0]))} "
      "measured steps per run")
print(f"{'ranks':>5} {'zero':>4} | {'formula':>9} {'planned':>9} {'measured':>9} {'meas/form':>9} "
      f"| {'peak RSS':>9} | {'step ms':>8} {'spread':>6} | {'sent MiB':>8} {'formula':>8} "
      f"{'ratio':>6}")
step_ms = {}
for n in (1, 2, 4):
    for z in (0, 1, 2):
        paths = runs(f"n{n}z{z}")
        rows = [r for p in paths for r in rows_of(p)]
        state = max(r["mem_state_bytes"] for r in rows)
        peak = max(r["mem_peak_bytes"] for r in rows)
        sent = statistics.median(r["sent_bytes"] for r in rows)
        ms = statistics.median(r["step_ms"] for r in rows)
        per = [statistics.median(r["step_ms"] for r in rows_of(p)) for p in paths]
        spread = (max(per) - min(per)) / ms if len(per) > 1 else float("nan")
        step_ms[(n, z)] = ms
        fs, fb = formula_state(z, n), formula_sent(z, n)
        spread_s = f"{spread:>5.1%}" if spread == spread else "     -"
        print(f"{n:>5} {z:>4} | {fs / mib:>9.1f} {planned_state(log_of(paths[0])) / mib:>9.1f} "
              f"{state / mib:>9.1f} {state / fs:>9.3f} | {peak / mib:>9.1f} | {ms:>8.0f} "
              f"{spread_s} | {sent / mib:>8.1f} {fb / mib:>8.1f} "
              f"{(sent / fb if fb else 1.0):>6.3f}")
print(f"stage 1 against stage 0, 2 ranks: step time x{step_ms[(2, 1)] / step_ms[(2, 0)]:.3f} "
      f"(medians of {repeats} interleaved runs each)")
print("MiB = 2^20 bytes. For GPUs (bf16 compute, not measured here): DeepSpeed's mixed-precision "
      "figures are 4 Psi + 12 Psi/N (stage 1) and 2 Psi + 14 Psi/N (stage 2); this code's GPU "
      "stage 1 holds 10 Psi + 8 Psi/N (fp32 master and gradient kept whole, bf16 copy).")
PY
