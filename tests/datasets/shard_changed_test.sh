#!/usr/bin/env bash
# [Shards in training] A shard truncated, deleted or rewritten while a 2-rank run reads it ends
# the run within 60 s with exit code 2 and a message naming the file and what happened; the
# checkpoints published before stay whole (`ckpt verify`), and once the shard is restored the
# same command resumes from them. No rank hangs.
source "$(dirname "$0")/../script_test_lib.sh"

words_shards 11 4 160
ls "$work/data/train"/*.h5 > "$work/shards"
[[ $(wc -l < "$work/shards") -ge 3 ]] || { echo "FAIL: want 3 or more shards"; exit 1; }
victim=$(sed -n 2p "$work/shards")
cp "$victim" "$work/victim.bak"
args=(--data "$work/data/train" --seq-len 16 --d-model 16 --n-layer 1 --n-head 2
      --global-batch 4 --micro-batch 2 --threads 1 --log-every 1000 --ckpt-every 50)

# case NAME PATTERN ACTION: start a long run, wait for its first checkpoint, ACTION the victim
# shard, and expect the end within 60 s, exit 2, one line naming it with PATTERN.
case_() {
  local name="$1" pattern="$2" action="$3"
  local ck="$work/ck_$name"
  timeout 120 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" "${args[@]}" \
    --steps 1000000 --ckpt-dir "$ck" > "$work/$name.out" 2> "$work/$name.err" &
  local job=$!
  for _ in $(seq 1200); do
    [[ -e $ck/latest ]] && break
    sleep 0.05
  done
  [[ -e $ck/latest ]] || { echo "FAIL $name: no checkpoint"; cat "$work/$name.err"; exit 1; }
  local t0
  t0=$(date +%s)
  eval "$action"
  local rc=0
  wait "$job" || rc=$?
  local took=$(($(date +%s) - t0))
  if [[ $rc != 2 || $took -gt 60 ]] ||
    [[ $(grep -c "error" "$work/$name.err") -lt 1 ]] ||
    ! grep -q "shard $victim $pattern" "$work/$name.err"; then
    echo "FAIL $name: exit $rc after $took s (want 2 within 60 s), stderr:"
    cat "$work/$name.err"
    exit 1
  fi
  echo "ok   $name: exit $rc after $took s: $(grep -m1 "shard $victim" "$work/$name.err")"
  cp "$work/victim.bak" "$victim"
  "$bin/ckpt" verify "$ck/$(cat "$ck/latest")" > "$work/$name.verify" ||
    { echo "FAIL $name: the kept checkpoint does not verify"; cat "$work/$name.verify"; exit 1; }
  # Restored, the shard lets the same command resume from the kept checkpoint.
  local kept
  kept=$(cat "$ck/latest")
  timeout 120 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" "${args[@]}" \
    --steps $((10#${kept#step_} + 10)) --ckpt-dir "$ck" > "$work/$name.resume.out" 2>&1 ||
    { echo "FAIL $name: resume"; cat "$work/$name.resume.out"; exit 1; }
  grep -q "resume: .*from $ck/$kept" "$work/$name.resume.out" ||
    { echo "FAIL $name: did not resume"; cat "$work/$name.resume.out"; exit 1; }
}

case_ truncated "changed while training (truncated: it was indexed with [0-9]* bytes, it has [0-9]* bytes now" \
  'truncate -s $(($(stat -c %s "$victim") / 2)) "$victim"'
case_ deleted "was deleted while training" 'rm "$victim"'
case_ rewritten "changed while training (rewritten: .*modified since" \
  'cp "$victim" "$work/tmp.h5"; cp "$work/tmp.h5" "$victim"; touch -d "+1 min" "$victim"'
