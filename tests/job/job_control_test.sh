#!/usr/bin/env bash
# [Stop requests] under mpiexec, without Slurm: SIGUSR2 sent to one rank only, or SIGTERM sent
# to one rank only, stops every rank after the same step with a checkpoint of it and exit code
# 75; rerunning the same command finishes with per-step losses identical (as text) to an
# uninterrupted run; a bad --preempt-signal exits 2; Slurm variables that contradict MPI's
# placement (SLURM_LOCALID against the shared-memory split, SLURM_NTASKS against the world
# size) exit 2, and inherited ones (mpirun inside a job) are recognised as such.
# shellcheck source-path=SCRIPTDIR source=../script_test_lib.sh
source "$(dirname "$0")/../script_test_lib.sh"
words_shards 7
steps=1500
args=(--data "$work/data/train" --seq-len 32 --d-model 32 --n-layer 2 --n-head 4
      --global-batch 8 --micro-batch 4 --threads 1 --log-every 1000 --ckpt-every 500)

run() {  # run NAME [ARGS...]: in the background; its pid in $job
  local name="$1"; shift
  DPT_TEST_RUN="$name" timeout 300 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" "${args[@]}" \
    --steps "$steps" --metrics "$work/$name.jsonl" "$@" > "$work/$name.log" 2>&1 &
  job=$!
}
finish() {  # finish NAME EXPECTED_RC
  local rc=0
  wait "$job" || rc=$?
  [[ $rc == "$2" ]] || { echo "FAIL: $1 exited $rc, expected $2"; cat "$work/$1.log"; exit 1; }
}
# The pid of world rank R of the run NAME (its processes carry DPT_TEST_RUN=NAME).
rank_pid() {
  local p env
  for p in $(pgrep -f "$bin/train"); do
    env=$(tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null) || continue
    if grep -qx "DPT_TEST_RUN=$1" <<< "$env" && grep -qx "OMPI_COMM_WORLD_RANK=$2" <<< "$env"; then
      echo "$p"; return
    fi
  done
  return 1
}
# Waits until NAME's metrics has at least N step lines.
wait_steps() {
  for _ in $(seq 600); do
    [[ -f $work/$1.jsonl ]] && (( $(grep -c '"loss"' "$work/$1.jsonl") >= $2 )) && return
    sleep 0.1
  done
  echo "FAIL: $1 did not reach step $2"; cat "$work/$1.log"; exit 1
}
losses() { grep -o '"step": [0-9]*, "loss": [^,]*' "$work/$1.jsonl"; }
expect_in() {
  local f="$1"; shift
  for t in "$@"; do grep -qF -- "$t" "$f" || { echo "FAIL: '$t' not in $f:"; cat "$f"; exit 1; }; done
}

run straight --ckpt-dir "$work/straight"
finish straight 0
[[ $(losses straight | wc -l) == "$steps" ]]

for sig in USR2 TERM; do
  # The signal reaches one rank only: rank 1 for USR2, rank 0 for TERM.
  r=$([[ $sig == USR2 ]] && echo 1 || echo 0)
  name="cut-$sig"
  run "$name" --ckpt-dir "$work/ck-$sig" --requeue-on-preempt true
  wait_steps "$name" 20
  pid=$(rank_pid "$name" "$r") || { echo "FAIL: no rank $r process"; exit 1; }
  kill "-$sig" "$pid"
  finish "$name" 75
  k=$(sed -n 's/.*stopped after step \([0-9]*\) of.*/\1/p' "$work/$name.log")
  [[ -n $k && $k -lt $steps ]] || { echo "FAIL: no early stop"; cat "$work/$name.log"; exit 1; }
  what=$([[ $sig == USR2 ]] && echo "SIGUSR2 (--preempt-signal)" || echo "SIGTERM")
  # The signal reached one rank; the other stopped by the agreement, and the line says so.
  other=$((1 - r))
  expect_in "$work/$name.log" "stopped after step $k of $steps: $what; ${what%% *} reached 1 of 2 ranks; the others ($(hostname -s) ranks $other) stopped by the agreement; checkpoint step $k saved"
  # Outside Slurm nothing is requeued, whatever --requeue-on-preempt says.
  if grep -q requeue "$work/$name.log"; then echo "FAIL: requeued outside Slurm"; exit 1; fi
  [[ -d $work/ck-$sig/$(printf 'step_%08d' "$k") ]] || { echo "FAIL: no checkpoint of step $k"; exit 1; }
  expect_in "$work/$name.jsonl" "\"event\": \"stop\", \"step\": $k"
  # The same command again: continues from step k and ends at --steps.
  run "$name" --ckpt-dir "$work/ck-$sig" --requeue-on-preempt true
  finish "$name" 0
  expect_in "$work/$name.log" "(step $k, saved by 2 rank(s))"
  diff <(losses straight) <(losses "$name") > "$work/diff-$sig" ||
    { echo "FAIL: $sig: losses differ from the uninterrupted run"; head "$work/diff-$sig"; exit 1; }
  echo "ok: $sig to rank $r: all ranks stopped after step $k with a checkpoint, exit 75; the rerun matches"
done

# Bad --preempt-signal values.
for bad in TERM SIGKILL bogus; do
  run bad --preempt-signal "$bad"
  finish bad 2
  expect_in "$work/bad.log" "--preempt-signal $bad"
done
echo "ok: bad --preempt-signal values exit 2"

# Slurm's per-task variables against MPI's placement (both ranks on this node: local 0 and 1).
slurm_run() {  # slurm_run NAME "ENV OF RANK 0" "ENV OF RANK 1"
  local name="$1"
  # shellcheck disable=SC2086
  timeout 120 "$mpiexec" --oversubscribe --bind-to none \
    -n 1 env SLURM_JOB_ID=77 SLURM_JOB_NODELIST=here $2 "$bin/train" "${args[@]}" --steps 2 : \
    -n 1 env SLURM_JOB_ID=77 SLURM_JOB_NODELIST=here $3 "$bin/train" "${args[@]}" --steps 2 \
    > "$work/$name.log" 2>&1 || echo "rc=$?" >> "$work/$name.log"
}
step="SLURM_STEP_ID=0"  # srun sets it for its tasks; the batch shell (and mpirun's ranks) lack it
slurm_run srun-ok "$step SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NTASKS=2" \
  "$step SLURM_PROCID=1 SLURM_LOCALID=1 SLURM_NTASKS=2"
expect_in "$work/srun-ok.log" "slurm: job 77, restart 0, nodes here" \
  "local rank: MPI shared-memory split, matches SLURM_LOCALID" "train: done"
slurm_run localid "$step SLURM_PROCID=0 SLURM_LOCALID=0" "$step SLURM_PROCID=1 SLURM_LOCALID=0"
expect_in "$work/localid.log" "rank 1 is local rank 1 of its node by MPI's shared-memory split but SLURM_LOCALID=0" "rc=2"
slurm_run ntasks "$step SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NTASKS=4" \
  "$step SLURM_PROCID=1 SLURM_LOCALID=1 SLURM_NTASKS=4"
expect_in "$work/ntasks.log" "SLURM_NTASKS=4 but MPI has 2 ranks" "rc=2"
slurm_run mpirun "SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NTASKS=4" "SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NTASKS=4"
expect_in "$work/mpirun.log" "SLURM_PROCID is not per rank" "train: done"
# srun without MPI wiring: every task a world of one (the second task of two here).
timeout 120 "$mpiexec" -n 1 env SLURM_JOB_ID=77 $step SLURM_PROCID=1 SLURM_LOCALID=1 SLURM_NTASKS=2 \
  "$bin/train" "${args[@]}" --steps 2 > "$work/singleton.log" 2>&1 || echo "rc=$?" >> "$work/singleton.log"
expect_in "$work/singleton.log" "srun started 2 tasks but MPI sees this one as a world of 1 rank" "rc=2"
echo "ok: Slurm's placement variables checked against MPI's"
