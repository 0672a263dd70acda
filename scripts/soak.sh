#!/usr/bin/env bash
# Soak tests of the recovery paths: many random faults, one table of outcomes, a verdict.
#   scripts/soak.sh kill N      kill -9 of a random rank at a random moment of a 2-rank run, then
#                               the same command again (--resume auto) until it finishes; the
#                               final parameters must equal an uninterrupted run's (goal: N/N)
#   scripts/soak.sh corrupt N   a random bit flip, zeroed 4 KiB page or truncation in a random
#                               file of the newest checkpoint, then a resume; it must fall back to
#                               the previous checkpoint (or load one whose damage HDF5 never reads)
#                               and end identical, or refuse with exit 2; never end with other
#                               parameters (goal: N/N, 0 silent loads)
#   scripts/soak.sh preempt N   SIGUSR2 at a random moment through the real local Slurm cluster
#                               (scripts/slurm/local-cluster.sh up), requeue, resume; identical
#                               (goal: N/N)
# Environment: SEED (default 1) makes the faults repeatable; BUILD_DIR (default build); KEEP=1
# keeps the work directory. Exit 0 when every trial met its goal.
set -euo pipefail
mode="${1:?usage: soak.sh kill|corrupt|preempt N}"
trials="${2:?usage: soak.sh kill|corrupt|preempt N}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${DPT_BIN:-${BUILD_DIR:-$root/build}/bin}"
py=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
RANDOM="${SEED:-1}"
[[ -x $bin/train ]] || { echo "soak: no $bin/train: build first (scripts/build.sh)" >&2; exit 2; }
case "$mode" in kill | corrupt | preempt) ;; *)
  echo "soak: unknown mode '$mode': kill, corrupt or preempt" >&2
  exit 2
  ;;
esac
work="$(mktemp -d "${TMPDIR:-/tmp}/dpt-soak-XXXXXX")"
cleanup() {
  kill $(jobs -p) 2> /dev/null || true
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

"$py" "$root/tests/words_corpus.py" "$work" --files 2 --docs 80 --seed 5
"$bin/prepare-data" --out "$work/data" --val-fraction 0 --shard-tokens 8000 --threads 2 \
  "$work"/text*.jsonl > "$work/prepare.log"
ranks=2
args=(--data "$work/data/train" --seq-len 16 --d-model 16 --n-layer 1 --n-head 2
      --global-batch 4 --micro-batch 2 --threads 1 --log-every 100000)
# Each rank records its pid (exec keeps it), so that a trial can kill one.
cat > "$work/rank.sh" << EOF
#!/usr/bin/env bash
echo \$\$ > "\$DPT_PID_DIR/pid.\$OMPI_COMM_WORLD_RANK"
exec "$bin/train" "\$@"
EOF
chmod +x "$work/rank.sh"
hash_of() { sed -n 's/.*parameter hash \([0-9a-f]*\).*/\1/p' "$1" | tail -n 1; }
train() {  # train LOG [ARGS...]: one run of the job; the exit code in $rc
  local log="$1"
  shift
  set +e
  DPT_PID_DIR="$work" timeout 600 mpiexec -n $ranks --oversubscribe --bind-to none \
    "$work/rank.sh" "${args[@]}" "$@" > "$log" 2>&1
  rc=$?
  set -e
  return $rc
}
same_state() {  # same_state STEP_DIR STEP_DIR: the state tensors of every rank file are equal
  "$py" - "$1" "$2" << 'PY'
import glob, os, sys
import h5py, numpy as np
a, b = sys.argv[1], sys.argv[2]
files = sorted(os.path.basename(f) for f in glob.glob(os.path.join(a, "rank_*.h5")))
ok = files and files == sorted(os.path.basename(f) for f in glob.glob(os.path.join(b, "rank_*.h5")))
for f in files if ok else []:
    with h5py.File(os.path.join(a, f), "r") as x, h5py.File(os.path.join(b, f), "r") as y:
        ok = ok and all(np.array_equal(x[k][...], y[k][...]) for k in ("params", "adam_m", "adam_v"))
sys.exit(0 if ok else 1)
PY
}
rand_between() {  # rand_between LO HI: an integer in [LO, HI]
  echo $(($1 + (RANDOM * 32768 + RANDOM) % ($2 - $1 + 1)))
}
ok=0
rows=()
row() { rows+=("$(printf "$@")"); printf '%s\n' "${rows[-1]}"; }

# ---- kill ---------------------------------------------------------------------------------------
if [[ $mode == kill ]]; then
  steps=3000
  t0=$(date +%s%N)
  train "$work/ref.log" --steps $steps --ckpt-dir "$work/ref_ck" --ckpt-every 250 || true
  ref_ms=$((($(date +%s%N) - t0) / 1000000))
  ref=$(hash_of "$work/ref.log")
  [[ $rc == 0 && -n $ref ]] || { cat "$work/ref.log"; exit 1; }
  echo "soak kill: $trials trial(s); the uninterrupted run: $steps steps in $ref_ms ms, hash $ref"
  row '%-6s %-5s %-9s %-9s %-13s %-7s %s' trial rank "kill at" "job exit" "resumed from" reruns result
  for t in $(seq "$trials"); do
    ck="$work/ck_$t"
    # A kill that comes after the run ended is no trial: draw another moment, earlier.
    span=$((ref_ms * 8 / 10))
    for attempt in 1 2 3 4; do
      rm -rf "$ck" "$work"/pid.*
      at=$(rand_between 300 "$span")
      victim=$((RANDOM % ranks))
      train "$work/kill_$t.log" --steps $steps --ckpt-dir "$ck" --ckpt-every 250 &
      job=$!
      sleep "$(printf '%d.%03d' $((at / 1000)) $((at % 1000)))"
      killed=no
      if [[ -s $work/pid.$victim ]] && kill -9 "$(cat "$work/pid.$victim")" 2> /dev/null; then
        killed=yes
      fi
      wait "$job" && first=0 || first=$?
      [[ $killed == yes && $first != 0 ]] && break
      span=$((span / 2))
    done
    from=$(cat "$ck/latest" 2> /dev/null || echo none)
    reruns=0
    rc=1
    while [[ $rc != 0 && $reruns -lt 3 ]]; do
      train "$work/rerun_${t}_$reruns.log" --steps $steps --ckpt-dir "$ck" --ckpt-every 250 || true
      reruns=$((reruns + 1))
    done
    last_log="$work/rerun_${t}_$((reruns - 1)).log"
    got=$(hash_of "$last_log")
    # Killed after its last checkpoint was published: the rerun has nothing left to train, and
    # that checkpoint's state must be the uninterrupted run's, bit for bit (the HDF5 files
    # themselves differ in their timestamps).
    if [[ -z $got ]] && grep -q "nothing left to train" "$last_log" &&
      same_state "$ck/$(printf step_%08d $steps)" "$work/ref_ck/$(printf step_%08d $steps)"; then
      got=$ref
    fi
    if [[ $killed == yes && $first != 0 && $rc == 0 && $got == "$ref" ]]; then
      ok=$((ok + 1))
      verdict=identical
    else
      verdict="FAIL (killed $killed, job exit $first, rerun exit $rc, hash ${got:-none})"
    fi
    row '%-6s %-5s %-9s %-9s %-13s %-7s %s' "$t" "$victim" "${at} ms" "$first" "$from" "$reruns" "$verdict"
  done
fi

# ---- corrupt ------------------------------------------------------------------------------------
if [[ $mode == corrupt ]]; then
  steps=250
  train "$work/ref.log" --steps $steps --ckpt-dir "$work/ref_ck" --ckpt-every 50 || true
  ref=$(hash_of "$work/ref.log")
  [[ $rc == 0 && -n $ref ]] || { cat "$work/ref.log"; exit 1; }
  # The run to damage: checkpoints at 50, 100, 150 and 200, where it stops.
  train "$work/base.log" --steps $steps --stop-at-step 200 --ckpt-dir "$work/base_ck" \
    --ckpt-every 50 --ckpt-keep 0 || true
  [[ -e $work/base_ck/step_00000200/meta.h5 ]] || { cat "$work/base.log"; exit 1; }
  echo "soak corrupt: $trials trial(s); the uninterrupted run to step $steps: hash $ref"
  row '%-6s %-16s %-9s %-22s %-9s %-13s %s' trial file damage where "rerun" "resumed from" result
  silent=0
  for t in $(seq "$trials"); do
    ck="$work/ck_$t"
    rm -rf "$ck"
    cp -r "$work/base_ck" "$ck"
    files=(meta.h5 rank_00000.h5 rank_00001.h5)
    file="${files[$((RANDOM % 3))]}"
    f="$ck/step_00000200/$file"
    size=$(stat -c %s "$f")
    kind=$((RANDOM % 3))
    case $kind in
      0)
        at=$(rand_between 0 $((size - 1)))
        bit=$((RANDOM % 8))
        "$py" -c "
import sys
p, at, bit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(p, 'r+b') as f:
    f.seek(at); b = f.read(1)[0]; f.seek(at); f.write(bytes([b ^ (1 << bit)]))" "$f" "$at" "$bit"
        damage="bit flip"
        where="byte $at bit $bit"
        ;;
      1)
        page=$(rand_between 0 $(((size - 1) / 4096)))
        dd if=/dev/zero of="$f" bs=4096 seek="$page" count=1 conv=notrunc status=none
        damage="zero page"
        where="page $page of $(((size + 4095) / 4096))"
        ;;
      2)
        at=$(rand_between 0 $((size - 1)))
        truncate -s "$at" "$f"
        damage=truncate
        where="to $at of $size B"
        ;;
    esac
    train "$work/corrupt_$t.log" --steps $steps --ckpt-dir "$ck" --ckpt-every 50 --ckpt-keep 0 ||
      true
    from=$(sed -n 's/.*resume: .*from .*\/\(step_[0-9]*\) .*/\1/p' "$work/corrupt_$t.log" | head -n 1)
    got=$(hash_of "$work/corrupt_$t.log")
    if [[ $rc == 0 && $got == "$ref" ]]; then
      ok=$((ok + 1))
      [[ $from == step_00000200 ]] && verdict="identical (the damage is in bytes never read)" ||
        verdict="identical (fell back)"
    elif [[ $rc == 2 ]]; then
      ok=$((ok + 1))
      verdict="refused: $(grep -m1 'error' "$work/corrupt_$t.log" | cut -c1-60)"
    elif [[ $rc == 0 ]]; then
      silent=$((silent + 1))
      verdict="FAIL: SILENT LOAD (hash $got)"
    else
      verdict="FAIL (exit $rc)"
    fi
    row '%-6s %-16s %-9s %-22s %-9s %-13s %s' "$t" "$file" "$damage" "$where" "exit $rc" "${from:-none}" "$verdict"
  done
  echo "silent loads of damaged state: $silent"
fi

# ---- preempt ------------------------------------------------------------------------------------
if [[ $mode == preempt ]]; then
  if ! command -v sbatch > /dev/null || ! scontrol ping > /dev/null 2>&1; then
    echo "soak: no Slurm controller answers: start one with scripts/slurm/local-cluster.sh up" >&2
    exit 2
  fi
  steps=20000  # long enough (about 15 s) that the signal lands while the job trains
  train "$work/ref.log" --steps $steps --ckpt-dir "$work/ref_ck" --ckpt-every 2000 || true
  ref=$(hash_of "$work/ref.log")
  [[ $rc == 0 && -n $ref ]] || { cat "$work/ref.log"; exit 1; }
  echo "soak preempt: $trials trial(s); the uninterrupted run: hash $ref"
  state() { { scontrol show job "$1" 2> /dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; } || echo "?"; }
  wait_state() {  # wait_state JOB SECONDS STATE...
    local job="$1" secs="$2" s
    shift 2
    for _ in $(seq $((secs * 5))); do
      s=$(state "$job")
      for want in "$@"; do [[ $s == "$want" ]] && return 0; done
      sleep 0.2
    done
    return 1
  }
  row '%-6s %-8s %-10s %-9s %s' trial job "signal at" restarts result
  for t in $(seq "$trials"); do
    ck="$work/ck_$t"
    out="$work/preempt_$t.out"
    job=$(LAUNCH=srun TRAIN="$bin/train" sbatch --parsable --job-name="dpt-soak-$t" --nodes=1 \
      --ntasks-per-node=$ranks --cpus-per-task=1 --time=15 --output="$out" --chdir="$work" \
      "$root/scripts/slurm/train.sbatch" "${args[@]}" --steps $steps --ckpt-dir "$ck" \
      --ckpt-every 2000 --requeue-on-preempt true)
    wait_state "$job" 120 RUNNING || true
    at=$(rand_between 2000 8000)
    sleep "$(printf '%d.%03d' $((at / 1000)) $((at % 1000)))"
    scancel --signal=USR2 "$job" 2> /dev/null || true
    if wait_state "$job" 120 PENDING; then
      # Released once no process of the first run is left (see tests/slurm/slurm_job_test.sh).
      for _ in $(seq 300); do
        pgrep -f -- "--ckpt-dir $ck( |\$)" > /dev/null || break
        sleep 0.2
      done
      sleep 1
      scontrol update JobId="$job" StartTime=now 2> /dev/null || true
    fi
    wait_state "$job" 300 COMPLETED || true
    restarts=$(scontrol show job "$job" 2> /dev/null | grep -o 'Restarts=[0-9]*' | cut -d= -f2)
    got=$(hash_of "$out")
    if [[ $(state "$job") == COMPLETED && $got == "$ref" && ${restarts:-0} -ge 1 ]]; then
      ok=$((ok + 1))
      verdict=identical
    else
      verdict="FAIL ($(state "$job"), hash ${got:-none})"
      scancel "$job" 2> /dev/null || true
    fi
    row '%-6s %-8s %-10s %-9s %s' "$t" "$job" "${at} ms" "${restarts:-?}" "$verdict"
  done
fi

echo "soak $mode: $ok/$trials met the goal (SEED=${SEED:-1})"
[[ $ok == "$trials" ]]
