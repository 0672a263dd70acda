#!/usr/bin/env bash
# bin/generate on a checkpoint of a real 2-rank run: the same seed prints the same text, another
# seed other text, temperature 0 the greedy text; the summary line gives the rate; --prompt-ids
# prints ids; a context longer than the model's slides; bad input exits 2 with one message.
# shellcheck source-path=SCRIPTDIR source=../script_test_lib.sh
source "$(dirname "$0")/../script_test_lib.sh"
words_shards 4 2 60 0.1
timeout 120 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" --data "$work/data/train" \
  --seq-len 32 --d-model 32 --n-layer 2 --n-head 4 --steps 40 --global-batch 8 --micro-batch 4 \
  --lr 3e-3 --threads 1 --log-every 100 --ckpt-dir "$work/ck" > "$work/train.log"
gen() {  # gen NAME ARGS...
  local name="$1"
  shift
  timeout 60 "$bin/generate" "$work/ck" "$@" > "$work/$name.out" 2> "$work/$name.err"
}
gen a --prompt "the " --max-tokens 60 --seed 3
gen b --prompt "the " --max-tokens 60 --seed 3
gen c --prompt "the " --max-tokens 60 --seed 4
gen g1 --prompt "the " --max-tokens 60 --temperature 0
gen g2 --prompt "the " --max-tokens 60 --temperature 0 --seed 99
cmp "$work/a.out" "$work/b.out"
! cmp -s "$work/a.out" "$work/c.out" || { echo "another seed printed the same text"; exit 1; }
cmp "$work/g1.out" "$work/g2.out"
grep -q "^the " "$work/a.out"
grep -Eq "generate: .*step 40.*generated in .* \([0-9.]+ tok/s, key/value cache\)" "$work/a.err" ||
  { cat "$work/a.err"; exit 1; }
echo "seeds: same text for the same seed, other text for another; greedy ignores the seed"
gen ids --prompt-ids 256,116,104 --max-tokens 5 --temperature 0
grep -Eq "^256,116,104,([0-9]+,)+$" "$work/ids.out" || { cat "$work/ids.out"; exit 1; }
gen long --prompt "the " --max-tokens 100 --ignore-eot --seed 5
grep -q "context slid" "$work/long.err" || { cat "$work/long.err"; exit 1; }
echo "prompt ids and a sliding context"
for bad in "--top-p 0" "--temperature -1" "--max-tokens 0" "--prompt-ids 1,x"; do
  # shellcheck disable=SC2086
  if "$bin/generate" "$work/ck" $bad > /dev/null 2> "$work/bad.err"; then
    echo "generate $bad succeeded"; exit 1
  fi
  rc=0; "$bin/generate" "$work/ck" $bad > /dev/null 2>&1 || rc=$?
  [[ $rc == 2 && $(wc -l < "$work/bad.err") == 1 ]] || { echo "$bad: exit $rc"; cat "$work/bad.err"; exit 1; }
done
rc=0; "$bin/generate" "$work/nothing" > /dev/null 2> "$work/bad.err" || rc=$?
[[ $rc == 2 ]] && grep -q "is not a directory" "$work/bad.err"
echo "bad input: exit 2 with one line each"
