#!/usr/bin/env bash
# Checkpoints written before the house issue still load: fixtures/round1_step_00000004 was saved
# by round one's bin/train (commit bc5740a) on 2 ranks, from the shards `words_shards 21 2 40 0`
# makes, with
#   train --data DATA --seq-len 16 --d-model 16 --n-layer 1 --n-head 2 --steps 8
#         --global-batch 4 --micro-batch 2 --lr 1e-2 --warmup-steps 2 --ckpt-dir CK
#         --stop-at-step 4
# `ckpt verify` accepts it, and resumed on 1, 2 and 4 ranks it trains steps 5 to 8 to the losses
# round one printed when it resumed the same checkpoint (within 1e-6 relative).
# shellcheck source-path=SCRIPTDIR source=../script_test_lib.sh
source "$(dirname "$0")/../script_test_lib.sh"
fixture="$(cd "$(dirname "$0")" && pwd)/fixtures/round1_step_00000004"
words_shards 21 2 40 0

"$bin/ckpt" verify "$fixture" > "$work/verify.log"
grep -q "^OK: .*step 4, saved by 2 rank(s), 7680 parameters" "$work/verify.log"

args=(--data "$work/data/train" --seq-len 16 --d-model 16 --n-layer 1 --n-head 2 --steps 8
      --global-batch 4 --lr 1e-2 --warmup-steps 2 --threads 1 --log-every 100)
for ranks in 1 2 4; do
  ck="$work/ck$ranks"
  mkdir -p "$ck"
  cp -r "$fixture" "$ck/step_00000004"
  timeout 120 "$mpiexec" -n "$ranks" --oversubscribe --bind-to none "$bin/train" "${args[@]}" \
    --micro-batch $((4 / ranks < 2 ? 4 / ranks : 2)) --ckpt-dir "$ck" \
    --metrics "$work/m$ranks.jsonl" > "$work/run$ranks.log"
  grep -q "resume: auto; from $ck/step_00000004 (step 4, saved by 2 rank(s))" "$work/run$ranks.log"
done

python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
# Round one, resuming this checkpoint on 2 ranks (1 and 4 ranks agreed to 8 digits).
want = {5: 4.72451443, 6: 4.59480262, 7: 4.50216488, 8: 4.48097211}
for ranks in (1, 2, 4):
    rows = [json.loads(l) for l in open(f"{w}/m{ranks}.jsonl")]
    got = {r["step"]: r["loss"] for r in rows if "loss" in r}
    assert sorted(got) == [5, 6, 7, 8], f"{ranks} rank(s): steps {sorted(got)}"
    for step, loss in want.items():
        assert abs(got[step] - loss) <= 1e-6 * loss, f"{ranks} rank(s), step {step}: {got[step]} vs {loss}"
    print(f"{ranks} rank(s): steps 5-8 match round one's losses")
PY
