#!/usr/bin/env bash
# [JSON lines] end to end: a checkpoint directory whose name holds a quote, a backslash, a space
# and non-ASCII letters; every line of the metrics file (steps, checkpoint, stop at --stop-at-step,
# resume) parses as JSON, and the paths in the events read back exactly.
# shellcheck source-path=SCRIPTDIR source=../script_test_lib.sh
source "$(dirname "$0")/../script_test_lib.sh"
words_shards 5 2 40 0
ck="$work/runs/a\"b\\c d/é"
args=(--data "$work/data/train" --seq-len 16 --d-model 16 --n-layer 1 --n-head 2 --steps 4
      --global-batch 4 --micro-batch 2 --threads 1 --ckpt-dir "$ck" --metrics "$work/m.jsonl")
timeout 120 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" "${args[@]}" \
  --stop-at-step 2 > "$work/a.log"
timeout 120 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" "${args[@]}" \
  > "$work/b.log"
python3 - "$work/m.jsonl" "$ck" <<'PY'
import json, sys
path, ck = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in open(path, encoding="utf-8")]
steps = [r["step"] for r in rows if "loss" in r]
assert steps == [1, 2, 3, 4], steps
saved = [r["path"] for r in rows if r.get("event") == "checkpoint"]
assert saved == [f"{ck}/step_00000002", f"{ck}/step_00000004"], saved
resumed = [r["from"] for r in rows if r.get("event") == "resume"]
assert resumed == [f"{ck}/step_00000002"], resumed
print(f"{len(rows)} lines parse as JSON; checkpoint and resume paths read back exactly")
PY
