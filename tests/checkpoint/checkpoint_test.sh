#!/usr/bin/env bash
# Checkpoints end to end through bin/train: bit-exact resume on 2 ranks; resume on 1 and 4
# ranks from a 2-rank checkpoint; refusal of contradicting options; a save killed midway is
# ignored; a truncated, missing or bit-flipped file is caught (auto falls back, PATH stops
# with exit 2); a rank killed with SIGKILL ends the job within 60 s and --resume auto then
# finishes bit-identical; the non-finite guard stops or skips and never saves NaN.
# shellcheck source-path=SCRIPTDIR source=../script_test_lib.sh
source "$(dirname "$0")/../script_test_lib.sh"
words_shards 5
args=(--data "$work/data/train" --seq-len 32 --n-layer 2 --n-head 4 --lr 3e-3 --warmup-steps 3 --threads 1 --log-every 100)

train() {  # train NAME RANKS [ARGS...] (env STEPS, D_MODEL, GB); exit code kept in $work/NAME.rc
  local name="$1" ranks="$2"
  shift 2
  set +e
  timeout 120 "$mpiexec" -n "$ranks" --oversubscribe --bind-to none "$bin/train" "${args[@]}" \
    --steps "${STEPS:-16}" --d-model "${D_MODEL:-32}" --global-batch "${GB:-8}" --metrics "$work/$name.jsonl" "$@" \
    > "$work/$name.log" 2> "$work/$name.err"
  echo $? > "$work/$name.rc"
  set -e
}
rc() { cat "$work/$1.rc"; }
expect_rc() {  # expect_rc NAME CODE
  [[ $(rc "$1") == "$2" ]] || {
    echo "FAIL: $1 exited $(rc "$1"), expected $2"; cat "$work/$1.log" "$work/$1.err"; exit 1; }
}
expect_in() {  # expect_in FILE TEXT...
  local f="$1"; shift
  for t in "$@"; do
    grep -qF -- "$t" "$f" || { echo "FAIL: '$t' not in $f:"; cat "$f"; exit 1; }
  done
}
hash_of() { sed -n 's/.*parameter hash \([0-9a-f]*\).*/\1/p' "$work/$1.log" | tail -n 1; }
# Per-step loss texts of a metrics file, exactly as printed.
losses() { grep -o '"step": [0-9]*, "loss": [^,]*' "$work/$1.jsonl" || true; }

# --- The reference: 16 straight steps on 2 ranks, saving every 4 (async).
train straight 2 --micro-batch 4 --ckpt-dir "$work/straight" --ckpt-every 4 --ckpt-keep 0
expect_rc straight 0
ref_hash=$(hash_of straight)
[[ $(losses straight | wc -l) == 16 ]] || { echo "FAIL: 16 losses expected"; exit 1; }
[[ -d $work/straight/step_00000016 ]]
echo "ok: straight run, hash $ref_hash"

# --- Exact resume: stop after 8 (with a checkpoint), rerun the same command.
train part 2 --micro-batch 4 --ckpt-dir "$work/exact" --stop-at-step 8
expect_rc part 0
expect_in "$work/part.log" "stopped after step 8 of 16"
cp "$work/part.jsonl" "$work/exact.jsonl"
train exact 2 --micro-batch 4 --ckpt-dir "$work/exact"
expect_rc exact 0
expect_in "$work/exact.log" "from $work/exact/step_00000008 (step 8, saved by 2 rank(s))"
diff <(losses straight) <(losses exact) || { echo "FAIL: resumed losses differ"; exit 1; }
[[ $(hash_of exact) == "$ref_hash" ]] || { echo "FAIL: resumed final parameters differ"; exit 1; }
echo "ok: 8 + resume to 16 on 2 ranks: 16 losses identical as text, same final parameters"

# --- Another number of ranks: the 2-rank checkpoint of step 8 on 1 and on 4 ranks.
for n in 1 4; do
  mkdir -p "$work/ranks$n"
  cp -r "$work/exact/step_00000008" "$work/ranks$n/"
  cp "$work/part.jsonl" "$work/ranks$n.jsonl"
  train ranks$n $n --micro-batch $((8 / n / (n == 1 ? 2 : 1))) --ckpt-dir "$work/ranks$n"
  expect_rc ranks$n 0
  expect_in "$work/ranks$n.log" "saved by 2 rank(s)"
done
"$py" - "$work" <<'PY'
import json, sys
w = sys.argv[1]
def losses(name):
    return [r["loss"] for r in map(json.loads, open(f"{w}/{name}.jsonl")) if "loss" in r]
ref = losses("straight")
for n in (1, 4):
    got = losses(f"ranks{n}")
    assert len(got) == 16, (n, len(got))
    for i, (a, b) in enumerate(zip(ref, got), 1):
        assert abs(a - b) <= 1e-5 * abs(a), f"{n} ranks, step {i}: {b} vs {a}"
    print(f"ok: 2-rank checkpoint resumed on {n} rank(s): 16 losses within 1e-5")
PY

# --- Options that contradict the checkpoint are refused (exit 2, one line naming the option).
for bad in "--d-model 48" "--global-batch 16" "--seed 7"; do
  name="contra_${bad%% *}"; name="${name//-/}"
  case "$bad" in
    --d-model*) D_MODEL=48 train "$name" 2 --micro-batch 4 --ckpt-dir "$work/exact" ;;
    --global-batch*) GB=16 train "$name" 2 --micro-batch 4 --ckpt-dir "$work/exact" ;;
    *) train "$name" 2 --micro-batch 4 --ckpt-dir "$work/exact" $bad ;;
  esac
  expect_rc "$name" 2
  expect_in "$work/$name.err" "${bad%% *}" "contradicts the checkpoint"
  [[ $(grep -c "^train:" "$work/$name.err") == 1 ]] || { echo "FAIL: not one line"; cat "$work/$name.err"; exit 1; }
done
mkdir -p "$work/other" && cp "$work/data/train/"*.h5 "$work/other/" && rm "$(ls "$work"/other/*.h5 | head -n 1)"
args_data=("${args[@]}")
args=("${args[@]:2}")  # --data given below instead
train contra_data 2 --micro-batch 4 --ckpt-dir "$work/exact" --data "$work/other"
args=("${args_data[@]}")
expect_rc contra_data 2
expect_in "$work/contra_data.err" "--data holds" "not the shards the checkpoint was trained on"
train never 2 --micro-batch 4 --ckpt-dir "$work/exact" --resume never
expect_rc never 2
expect_in "$work/never.err" "--resume never" "already holds checkpoints"
echo "ok: contradicting --d-model, --global-batch, --seed, --data and --resume never refused"

# --- Atomicity: the last rank dies halfway through writing the checkpoint of step 8.
train killed_save 2 --micro-batch 4 --ckpt-dir "$work/atomic" --ckpt-every 4 --fault-kill-in-save 8
[[ $(rc killed_save) != 0 ]] || { echo "FAIL: a rank died but the job succeeded"; exit 1; }
ls -a "$work/atomic" | grep -q '^\.partial\.step_00000008' || {
  echo "FAIL: no partial directory left"; ls -la "$work/atomic"; exit 1; }
[[ ! -e $work/atomic/step_00000008 ]] || { echo "FAIL: the interrupted save was published"; exit 1; }
cp "$work/killed_save.jsonl" "$work/atomic.jsonl"  # the resumed run keeps steps 1-4 of it
train atomic 2 --micro-batch 4 --ckpt-dir "$work/atomic" --ckpt-every 4
expect_rc atomic 0
expect_in "$work/atomic.log" "left by a save that did not finish" "from $work/atomic/step_00000004"
[[ $(hash_of atomic) == "$ref_hash" ]] || { echo "FAIL: final parameters differ"; exit 1; }
diff <(losses straight) <(losses atomic) || { echo "FAIL: losses differ after the crash"; exit 1; }
echo "ok: a save killed midway is ignored; the rerun resumes at step 4 and ends bit-identical"

# --- Corruption of the newest checkpoint (step 16): auto falls back to step 12 and still ends
# bit-identical; --resume PATH stops with exit 2 naming the file.
corrupt() {  # corrupt NAME HOW: a copy of the straight run's checkpoints, step 16 damaged
  rm -rf "$work/$1" && cp -r "$work/straight" "$work/$1"
  local f="$work/$1/step_00000016/rank_00001.h5"
  case "$2" in
    flip) "$py" -c "
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[len(b) // 2] ^= 0x10
open(p, 'wb').write(b)" "$f" ;;
    truncate) truncate -s $(( $(stat -c %s "$f") / 3 )) "$f" ;;
    missing) rm "$f" ;;
    meta) "$py" -c "
import sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); i = b.find(b'global-batch = 8')
assert i > 0, 'config text not found in meta.h5'
b[i + 15] ^= 0x01
open(p, 'wb').write(b)" "$work/$1/step_00000016/meta.h5" ;;
  esac
}
for how in flip truncate missing meta; do
  corrupt "c_$how" "$how"
  train "c_$how" 2 --micro-batch 4 --ckpt-dir "$work/c_$how" --ckpt-every 4
  expect_rc "c_$how" 0
  expect_in "$work/c_$how.log" "skipping $work/c_$how/step_00000016" "trying the previous" \
    "from $work/c_$how/step_00000012"
  [[ $(hash_of "c_$how") == "$ref_hash" ]] || { echo "FAIL: $how: final parameters differ"; exit 1; }
done
expect_in "$work/c_flip.log" "rank_00001.h5" "fails its checksum"
expect_in "$work/c_truncate.log" "rank_00001.h5" "(truncated)"
expect_in "$work/c_missing.log" "rank_00001.h5" "cannot be opened"
expect_in "$work/c_meta.log" "meta.h5"
corrupt p_flip flip
train p_flip 2 --micro-batch 4 --ckpt-dir "$work/p_flip" --resume "$work/p_flip/step_00000016"
expect_rc p_flip 2
expect_in "$work/p_flip.err" "rank_00001.h5" "fails its checksum"
[[ $(grep -c "^train:" "$work/p_flip.err") == 1 ]] || { echo "FAIL: not one line"; cat "$work/p_flip.err"; exit 1; }
echo "ok: bit flip, truncation, missing file and damaged meta.h5 caught; auto falls back, PATH exits 2"

# --- The non-finite guard: NaN in the last rank's gradient at step 5.
train nan_stop 2 --micro-batch 4 --ckpt-dir "$work/nan_stop" --ckpt-every 2 --ckpt-keep 0 \
  --fault-nan-step 5
expect_rc nan_stop 1
expect_in "$work/nan_stop.err" "step 5" "--nonfinite stop"
expect_in "$work/nan_stop.jsonl" '"step": 5, "loss": ' '"skipped": true'
[[ $(ls "$work/nan_stop" | grep -c '^step_') == 2 ]] || { echo "FAIL: saves after the NaN"; ls "$work/nan_stop"; exit 1; }
STEPS=8 train nan_skip 2 --micro-batch 4 --ckpt-dir "$work/nan_skip" --ckpt-every 1 \
  --ckpt-keep 0 --fault-nan-step 5 --nonfinite skip
expect_rc nan_skip 0
"$py" - "$work" <<'PY'
import json, sys
import h5py
import numpy as np
w = sys.argv[1]
def state(ck):
    out = []
    for r in (0, 1):
        with h5py.File(f"{ck}/rank_0000{r}.h5", "r") as f:
            out.append(np.concatenate([f[k][()] for k in ("params", "adam_m", "adam_v")]))
    return np.concatenate(out)
rows = [json.loads(l) for l in open(f"{w}/nan_skip.jsonl") if '"loss"' in l]
assert [r["step"] for r in rows if r.get("skipped")] == [5], rows
assert rows[4]["grad_norm"] is None, rows[4]
s4, s5 = state(f"{w}/nan_skip/step_00000004"), state(f"{w}/nan_skip/step_00000005")
assert np.array_equal(s4, s5), "the skipped step changed the state"
for step in range(1, 9):
    assert np.isfinite(state(f"{w}/nan_skip/step_0000000{step}")).all(), step
for step in (2, 4):
    assert np.isfinite(state(f"{w}/nan_stop/step_0000000{step}")).all(), step
print("ok: NaN gradient at step 5: 'stop' ends with exit 1 and no save after step 4; 'skip' "
      "leaves the state of step 4 untouched, every checkpoint finite")
PY

# --- A rank killed with SIGKILL mid-run: the job ends within 60 s, and --resume auto finishes
# with the parameters of an uninterrupted run.
long=(--ckpt-every 100 --micro-batch 4)
STEPS=1500 train long_straight 2 "${long[@]}" --ckpt-dir "$work/long_straight"
expect_rc long_straight 0
set +e
timeout 120 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" "${args[@]}" "${long[@]}" \
  --steps 1500 --d-model 32 --global-batch 8 --ckpt-dir "$work/long" --metrics "$work/long.jsonl" \
  > "$work/long_killed.log" 2>&1 &
launcher=$!
set -e
victim=""
for _ in $(seq 600); do  # up to 60 s for the run to pass step 300
  if [[ -f $work/long.jsonl ]] && grep -q '"step": 300,' "$work/long.jsonl"; then
    for p in $(pgrep -f "$work/long --metrics" || true); do
      if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then
        victim=$p
      fi
    done
    break
  fi
  sleep 0.1
done
[[ -n $victim ]] || { echo "FAIL: did not find rank 1 of the running job"; cat "$work/long_killed.log"; exit 1; }
t0=$(date +%s)
kill -9 "$victim"
set +e
wait "$launcher"
killed_rc=$?
set -e
elapsed=$(( $(date +%s) - t0 ))
[[ $killed_rc != 0 ]] || { echo "FAIL: the job exited 0 after losing a rank"; exit 1; }
(( elapsed <= 60 )) || { echo "FAIL: the job took ${elapsed}s to end after the kill"; exit 1; }
echo "ok: rank 1 killed at step >= 300: the job ended with exit $killed_rc in ${elapsed}s"
STEPS=1500 train long_resumed 2 "${long[@]}" --ckpt-dir "$work/long"
expect_rc long_resumed 0
expect_in "$work/long_resumed.log" "resume: auto; from $work/long/step_"
[[ $(hash_of long_resumed) == "$(hash_of long_straight)" ]] || {
  echo "FAIL: final parameters after the kill differ"; exit 1; }
echo "ok: --resume auto after the kill ends with the uninterrupted run's parameters"
