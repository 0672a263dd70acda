#!/usr/bin/env bash
# [Failed save] on a disk that fills up: --ckpt-dir on a tmpfs with room for one and a half
# checkpoints, --ckpt-keep 1, a save every 2 steps of 6. The save of step 4 meets a full disk.
#   --ckpt-on-error stop:     the run ends (exit 1) with one message naming the directory, the
#                             bytes free and needed, and the checkpoint kept; no partial files.
#   --ckpt-on-error continue: a warning, training goes on to step 6; that last save fails too
#                             and ends the run with an error.
# Either way step_00000002 stays published, `latest` names it, and `ckpt verify` passes on it;
# it resumes to the same parameters as an uninterrupted run. Needs root to mount a tmpfs (CI
# runs as root); elsewhere it skips.
source "$(dirname "$0")/../script_test_lib.sh"

words_shards 7
common=(--data "$work/data/train" --seq-len 16 --d-model 32 --n-layer 2 --n-head 2
        --global-batch 4 --micro-batch 2 --steps 6 --ckpt-every 2 --ckpt-keep 1 --threads 1
        --log-every 1)
train() {  # train LOG [ARGS...]: 2 ranks under a 120 s bound; the exit code in $rc
  local log="$1"
  shift
  set +e
  timeout 120 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" "${common[@]}" "$@" \
    > "$log.out" 2> "$log.err"
  rc=$?
  set -e
}

# The uninterrupted run: its final parameters, and the size of one checkpoint; then a file
# system with room for 1.5 checkpoints.
train "$work/ref" --ckpt-dir "$work/ref_ck"
[[ $rc == 0 ]] || { cat "$work/ref.err"; exit 1; }
bytes=$(du -sb "$work/ref_ck/step_00000006" | cut -f1)
mnt="$work/full"
mkdir "$mnt"
if ! mount -t tmpfs -o size=$((bytes * 3 / 2)) tmpfs "$mnt" 2> "$work/mount.err"; then
  echo "SKIP: cannot mount a tmpfs here ($(cat "$work/mount.err")): run as root"
  exit 77
fi
trap 'umount "$mnt" 2> /dev/null || true; rm -rf "$work"' EXIT
echo "one checkpoint: $bytes bytes; tmpfs of $((bytes * 3 / 2)) bytes at $mnt"

# The checkpoint survives the failure: published, named by latest, verified, and resuming from
# it ends where the uninterrupted reference run ends.
kept_and_whole() {  # kept_and_whole CASE
  local ck="$mnt/ck"
  ls -A "$ck" > "$work/$1.ls"
  [[ $(tr '\n' ' ' < "$work/$1.ls") == "latest step_00000002 " ]] ||
    { echo "FAIL $1: $ck holds: $(cat "$work/$1.ls")"; exit 1; }
  [[ $(cat "$ck/latest") == step_00000002 ]] || { echo "FAIL $1: latest names $(cat "$ck/latest")"; exit 1; }
  "$bin/ckpt" verify "$ck/step_00000002" > "$work/$1.verify" ||
    { echo "FAIL $1: ckpt verify"; cat "$work/$1.verify"; exit 1; }
  rm -rf "$work/resume_ck"
  cp -r "$ck" "$work/resume_ck"
  train "$work/$1.resume" --ckpt-dir "$work/resume_ck" --resume auto
  [[ $rc == 0 ]] || { echo "FAIL $1: resume exit $rc"; cat "$work/$1.resume.err"; exit 1; }
  local hash ref
  hash=$(grep -o 'parameter hash [0-9a-f]*' "$work/$1.resume.out")
  ref=$(grep -o 'parameter hash [0-9a-f]*' "$work/ref.out")
  [[ -n $hash && $hash == "$ref" ]] ||
    { echo "FAIL $1: resumed '$hash', uninterrupted '$ref'"; exit 1; }
}

# ---- stop -------------------------------------------------------------------------------------
train "$work/stop" --ckpt-dir "$mnt/ck"
msg=$(grep -F "error" "$work/stop.err" || true)
if [[ $rc != 1 || $(grep -c "error" "$work/stop.err") != 1 ]] ||
  ! grep -q "checkpoint of step 4 not saved: .*No space left on device" <<< "$msg" ||
  ! grep -q "the file system of $mnt/ck has [0-9]* bytes free and a checkpoint of this run needs about [0-9]*" <<< "$msg" ||
  ! grep -q "the newest checkpoint, $mnt/ck/step_00000002, is kept" <<< "$msg"; then
  echo "FAIL stop: exit $rc (want 1), stderr:"
  cat "$work/stop.err"
  exit 1
fi
grep -q '^step 6/6' "$work/stop.out" &&
  { echo "FAIL stop: trained on to step 6"; exit 1; }
kept_and_whole stop
echo "ok   stop: $msg"

# ---- continue ---------------------------------------------------------------------------------
rm -rf "${mnt:?}/ck"
train "$work/go" --ckpt-dir "$mnt/ck" --ckpt-on-error continue --metrics "$work/go.jsonl"
if [[ $rc != 1 ]] ||
  [[ $(grep -c "warning: checkpoint of step 4 not saved: .*training goes on" "$work/go.err") != 1 ]] ||
  [[ $(grep -c "error:" "$work/go.err") != 1 ]] ||
  ! grep "error:" "$work/go.err" | grep -q "checkpoint of step 6 not saved: .*run's last save"; then
  echo "FAIL continue: exit $rc (want 1), stderr:"
  cat "$work/go.err"
  exit 1
fi
grep -q '"step": *6' "$work/go.jsonl" || { echo "FAIL continue: no step 6 in the metrics"; exit 1; }
grep -q '"ckpt_failed_step": *4' "$work/go.jsonl" ||
  { echo "FAIL continue: no ckpt_failed_step 4 in the metrics"; exit 1; }
kept_and_whole continue
echo "ok   continue: $(grep warning "$work/go.err" | head -1)"
