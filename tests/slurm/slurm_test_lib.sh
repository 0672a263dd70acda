# Sourced by the Slurm cluster tests: the skip when no controller answers, a work directory the
# jobs can reach (removed at exit, with the jobs cancelled), and helpers that read a job's state
# and wait for it.
# shellcheck shell=bash disable=SC2034
set -euo pipefail
bin="${DPT_BIN:?set by ctest}"
src="${DPT_SOURCE:?set by ctest}"
mpiexec="${MPIEXEC:-mpiexec}"
py="${PYTHON:-/usr/bin/python3}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1

if ! command -v sbatch > /dev/null || ! scontrol ping > /dev/null 2>&1; then
  echo "SKIP: no Slurm controller answers (start one with scripts/slurm/local-cluster.sh up)"
  exit 77
fi
if ! srun --mpi=list 2>&1 | grep -q pmix; then
  echo "SKIP: this Slurm has no PMIx plugin (srun --mpi=list)"
  exit 77
fi
# Jobs run as this user on this machine's nodes, which share its /tmp.
work="$(mktemp -d "${TMPDIR:-/tmp}/dpt-slurm-XXXXXX")"
jobs_started=()
cleanup() {
  for j in "${jobs_started[@]}"; do scancel "$j" 2> /dev/null || true; done
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

# The per-step losses of a metrics file, as text.
losses() { grep -o '"step": [0-9]*, "loss": [^,]*' "$1"; }
# A job's state or field; "?" when scontrol does not answer this once.
state() { { scontrol show job "$1" 2> /dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; } || echo "?"; }
field() { { scontrol show job "$1" 2> /dev/null | grep -o "$2=[^ ]*" | head -n 1 | cut -d= -f2; } || echo "?"; }
wait_state() {  # wait_state JOB SECONDS STATE...: until the job is in one of the states
  local job="$1" secs="$2" s
  shift 2
  for _ in $(seq $((secs * 5))); do
    s=$(state "$job")
    for want in "$@"; do [[ $s == "$want" ]] && return 0; done
    sleep 0.2
  done
  echo "FAIL: job $job is $s after ${secs} s, expected one of: $*"
  scontrol show job "$job"; cat "$work"/*.out 2> /dev/null; exit 1
}
wait_steps() {  # wait_steps FILE N
  for _ in $(seq 600); do
    [[ -f $1 ]] && (( $(grep -c '"loss"' "$1") >= $2 )) && return
    sleep 0.1
  done
  echo "FAIL: $1 did not reach step $2"; cat "$work"/*.out 2> /dev/null; exit 1
}
# A requeued job is held by Slurm (about 120 s) until its last run is surely gone; a test
# releases it early, but only once no process of that run is left (released sooner, the old
# run's end can overtake the new start and mark the job FAILED).
release() {  # release JOB CKPT_DIR
  for _ in $(seq 300); do
    pgrep -f -- "--ckpt-dir $2( |\$)" > /dev/null || break
    sleep 0.2
  done
  sleep 1
  scontrol update JobId="$1" StartTime=now 2> /dev/null || true
}
expect_in() {
  local f="$1"; shift
  for t in "$@"; do grep -qF -- "$t" "$f" || { echo "FAIL: '$t' not in $f:"; cat "$f"; exit 1; }; done
}
# The step of the first "stopped after step K" line of a job's output.
stop_step() { sed -n 's/.*stopped after step \([0-9]*\) of.*/\1/p' "$1" | head -n 1; }
# batch_shell_stop JOB NAME: SIGUSR2 to the batch shell of a LAUNCH=mpirun job once it has
# logged 20 steps (the template's trap hands it to mpirun, mpirun to every rank); the job must
# end with exit code 75. Sets k to the stop step.
batch_shell_stop() {
  local job="$1" name="$2"
  wait_steps "$work/$name.jsonl" 20
  scancel --batch --signal=USR2 "$job"
  wait_state "$job" 120 FAILED COMPLETED
  [[ $(field "$job" ExitCode) == 75:0 ]] ||
    { echo "FAIL: exit code"; scontrol show job "$job"; cat "$work/$name.out"; exit 1; }
  k=$(stop_step "$work/$name.out")
}
# preempt_requeue JOB NAME CKPT_DIR: SIGUSR2 to every task once the job has logged 20 steps;
# the job must requeue itself (restart 1), is released early and must complete. Sets k to the
# stop step.
preempt_requeue() {
  local job="$1" name="$2"
  wait_steps "$work/$name.jsonl" 20
  scancel --signal=USR2 "$job"
  # Requeued: back to pending (held about 120 s by Slurm), then released at once.
  wait_state "$job" 120 PENDING
  [[ $(field "$job" Restarts) == 1 ]] || { echo "FAIL: restart count"; scontrol show job "$job"; exit 1; }
  release "$job" "$3"
  wait_state "$job" 300 COMPLETED
  k=$(stop_step "$work/$name.out")
  [[ -n $k ]] || { echo "FAIL: no stop line"; cat "$work/$name.out"; exit 1; }
}
