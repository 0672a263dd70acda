#!/usr/bin/env bash
# A training job through scripts/slurm/train.sbatch on a real Slurm cluster (one node of the
# cluster of scripts/slurm/local-cluster.sh in CI), 2 tasks launched by srun --mpi=pmix:
#  1. preemption: SIGUSR2 (scancel --signal=USR2) mid-run; the job checkpoints, requeues itself
#     (--requeue-on-preempt), runs again with --resume auto and finishes; its per-step losses
#     are identical, as text, to an uninterrupted mpiexec run of the same steps;
#  2. scancel (SIGTERM to every task, SIGKILL after KillWait) mid-run: the job checkpoints and
#     ends, is not requeued and stays ended; submitting it again completes it, identical;
#  3. the time limit: a 1-minute job with --stop-before-limit 55 stops itself after a few
#     seconds of every run, checkpoints and requeues, until the steps are done; identical.
#  4. LAUNCH=mpirun: Open MPI's mpirun inside the job instead of srun; the preemption signal
#     goes to the batch shell (scancel --batch), whose trap hands it to mpirun and mpirun to
#     the ranks: a checkpoint, exit code 75, and the resubmission finishes identical.
# Exit 77 (skipped) when no Slurm controller answers.
# shellcheck source-path=SCRIPTDIR source=slurm_test_lib.sh
source "$(dirname "$0")/slurm_test_lib.sh"

"$py" "$src/tests/words_corpus.py" "$work" --files 2 --docs 80 --seed 11
"$bin/prepare-data" --out "$work/data" --val-fraction 0 --shard-tokens 8000 --threads 2 \
  "$work"/text*.jsonl > "$work/prepare.log"
steps=2000
args=(--data "$work/data/train" --seq-len 32 --n-layer 2 --n-head 4 --steps "$steps"
      --global-batch 8 --micro-batch 4 --threads 1 --log-every 500 --ckpt-every 500)

submit() {  # submit NAME [TRAIN ARGS...]: prints the job id (env MINUTES: time limit,
  local name="$1"; shift  # SIGNAL: replaces the template's --signal; LAUNCH: srun | mpirun;
                          # WIDTH: --d-model, 32)
  LAUNCH="${LAUNCH:-srun}" TRAIN="$bin/train" sbatch ${SIGNAL:+--signal="$SIGNAL"} --parsable --job-name="dpt-$name" --nodes=1 --ntasks-per-node=2 \
    --cpus-per-task=1 --time="${MINUTES:-15}" --output="$work/$name.out" --chdir="$work" \
    "$src/scripts/slurm/train.sbatch" "${args[@]}" --d-model "${WIDTH:-32}" \
    --metrics "$work/$name.jsonl" "$@"
}

# The reference: the same steps, uninterrupted, under mpiexec.
timeout 300 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" "${args[@]}" --d-model 32 \
  --metrics "$work/straight.jsonl" > "$work/straight.log" 2>&1 ||
  { cat "$work/straight.log"; exit 1; }
[[ $(losses "$work/straight.jsonl" | wc -l) == "$steps" ]]

# --- 1. Preemption signal, requeue, resume.
job=$(submit preempt --ckpt-dir "$work/ck-preempt" --requeue-on-preempt true)
jobs_started+=("$job")
preempt_requeue "$job" preempt "$work/ck-preempt"
out="$work/preempt.out"
expect_in "$out" "stopped after step $k of $steps: SIGUSR2 (--preempt-signal); SIGUSR2 reached all 2 ranks; checkpoint step $k saved" \
  "requeueing job $job (--requeue-on-preempt)" "train: job $job requeued" "slurm: job $job, restart 1" \
  "(step $k, saved by 2 rank(s))" "train: done"
diff <(losses "$work/straight.jsonl") <(losses "$work/preempt.jsonl") > "$work/diff-preempt" ||
  { echo "FAIL: preempted job's losses differ"; head "$work/diff-preempt"; exit 1; }
echo "ok: SIGUSR2 at step $k: checkpointed, requeued, resumed, finished with identical losses"

# --- 2. scancel (SIGTERM), with --requeue-on-preempt even: ends, not requeued; a manual
# resubmission completes it.
job=$(submit term --ckpt-dir "$work/ck-term" --requeue-on-preempt true)
jobs_started+=("$job")
wait_steps "$work/term.jsonl" 20
scancel "$job"
wait_state "$job" 120 CANCELLED
sleep 2
[[ $(state "$job") == CANCELLED && $(field "$job" Restarts) == 0 ]] ||
  { echo "FAIL: the job did not stay ended"; scontrol show job "$job"; exit 1; }
# The ranks finished their stop within KillWait: the checkpoint is published.
for _ in $(seq 100); do grep -q "stopped after step" "$work/term.out" && break; sleep 0.2; done
k=$(stop_step "$work/term.out")
expect_in "$work/term.out" "stopped after step $k of $steps: SIGTERM; SIGTERM reached all 2 ranks; checkpoint step $k saved"
job2=$(submit term --ckpt-dir "$work/ck-term")
jobs_started+=("$job2")
wait_state "$job2" 300 COMPLETED
expect_in "$work/term.out" "(step $k, saved by 2 rank(s))" "train: done"
diff <(losses "$work/straight.jsonl") <(losses "$work/term.jsonl") > "$work/diff-term" ||
  { echo "FAIL: resubmitted job's losses differ"; head "$work/diff-term"; exit 1; }
echo "ok: scancel (SIGTERM) at step $k: checkpointed, ended, not requeued; resubmission identical"

# --- 3. The job's own time limit: every run stops 55 s before its 1-minute limit. A wider
# model (about 7 s of steps here) makes the 5 s a run gets too short for all of them, however
# fast the machine, and leaves each run most of its 5 s to train, however slow the start.
# The template's USR2@180 would come at once in a 1-minute job: SIGURG (ignored by default)
# takes its place, so that the time limit alone stops the job.
timeout 300 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" "${args[@]}" \
  --d-model 64 --metrics "$work/straight64.jsonl" > "$work/straight64.log" 2>&1 ||
  { cat "$work/straight64.log"; exit 1; }
job=$(MINUTES=1 SIGNAL=URG@1 WIDTH=64 submit limit --ckpt-dir "$work/ck-limit" --stop-before-limit 55 \
  --requeue-on-preempt true)
jobs_started+=("$job")
for _ in $(seq 600); do
  s=$(state "$job")
  [[ $s == COMPLETED ]] && break
  # A job being requeued may show FAILED for a moment; only a state that stays is an end.
  if [[ $s == FAILED || $s == CANCELLED || $s == TIMEOUT ]]; then
    sleep 5
    [[ $(state "$job") == "$s" ]] && { echo "FAIL: job $job is $s"; cat "$work/limit.out"; exit 1; }
  fi
  # Requeued: release it at once rather than after Slurm's 120 s hold.
  if [[ $s == PENDING ]] && [[ $(field "$job" Restarts) -gt 0 ]] &&
     [[ $(field "$job" Reason) == BeginTime ]]; then
    release "$job" "$work/ck-limit"
  fi
  sleep 0.5
done
[[ $(state "$job") == COMPLETED ]] || { echo "FAIL: job $job never completed"; cat "$work/limit.out"; exit 1; }
runs=$(( $(field "$job" Restarts) + 1 ))
(( runs >= 2 )) || { echo "FAIL: the time limit never stopped the job"; cat "$work/limit.out"; exit 1; }
expect_in "$work/limit.out" "s left; stopping with a checkpoint once 55 s remain (--stop-before-limit)" \
  "the job's time limit (--stop-before-limit 55); checkpoint step" "train: done"
diff <(losses "$work/straight64.jsonl") <(losses "$work/limit.jsonl") > "$work/diff-limit" ||
  { echo "FAIL: time-limited job's losses differ"; head "$work/diff-limit"; exit 1; }
echo "ok: time limit: $runs runs of a 1-minute job, each stopped 55 s early, identical losses"

# --- 4. mpirun instead of srun; the signal reaches the batch shell, which forwards it.
job=$(LAUNCH=mpirun SIGNAL=B:URG@1 submit mpirun --ckpt-dir "$work/ck-mpirun")
jobs_started+=("$job")
batch_shell_stop "$job" mpirun
expect_in "$work/mpirun.out" "launched by mpirun inside the job" \
  "stopped after step $k of $steps: SIGUSR2 (--preempt-signal); SIGUSR2 reached all 2 ranks; checkpoint step $k saved"
job2=$(LAUNCH=mpirun SIGNAL=B:URG@1 submit mpirun --ckpt-dir "$work/ck-mpirun")
jobs_started+=("$job2")
wait_state "$job2" 300 COMPLETED
diff <(losses "$work/straight.jsonl") <(losses "$work/mpirun.jsonl") > "$work/diff-mpirun" ||
  { echo "FAIL: mpirun job's losses differ"; head "$work/diff-mpirun"; exit 1; }
echo "ok: LAUNCH=mpirun: SIGUSR2 through the batch shell at step $k, exit 75, resubmission identical"
