#!/usr/bin/env bash
# The core claim end to end through bin/train and its metrics file, on HDF5 shards made by
# prepare-data: 2 ranks x micro-batch 4, 4 ranks x 2, 1 rank x 8 and 1 rank accumulating 2 x 4
# print the same per-step and validation losses (within 1e-5 relative) on the same global batch
# of 8, with the full and with the local shuffle; rerunning the 2-rank job prints identical text.
# shellcheck source-path=SCRIPTDIR source=../script_test_lib.sh
source "$(dirname "$0")/../script_test_lib.sh"
words_shards 3 3 60 0.1
[[ $(ls "$work/data/train" | wc -l) -ge 3 ]] || { echo "expected several shards"; exit 1; }
args=(--data "$work/data/train" --val-data "$work/data/val" --val-every 4 --val-samples 24
      --seq-len 32 --d-model 32 --n-layer 2 --n-head 4 --steps 12
      --global-batch 8 --lr 3e-3 --warmup-steps 3 --threads 1 --log-every 100)
run() {  # run NAME RANKS MICRO_BATCH [ARGS...]
  local name="$1" ranks="$2" micro="$3"
  shift 3
  timeout 120 "$mpiexec" -n "$ranks" --oversubscribe --bind-to none "$bin/train" "${args[@]}" \
    --micro-batch "$micro" --metrics "$work/$name.jsonl" "$@" > "$work/$name.log"
}
run two 2 4
run two_again 2 4
run one 1 8
run accum 1 4
run four 4 2
run local_two 2 4 --shuffle local --shuffle-window 2
run local_one 1 8 --shuffle local --shuffle-window 2
grep -q "2 accumulation step(s)" "$work/accum.log"

python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
def losses(name, key="loss"):
    rows = [json.loads(l) for l in open(f"{w}/{name}.jsonl")]
    return [r[key] for r in rows if key in r]
def same(a, b, what):
    assert len(a) == len(b) and a, f"{what}: {len(a)} vs {len(b)} values"
    for i, (x, y) in enumerate(zip(a, b), 1):
        assert abs(x - y) <= 1e-5 * abs(y), f"{what}, value {i}: {x} vs {y}"
two = losses("two")
assert len(two) == 12
for name, what in (("one", "1 rank x 8"), ("accum", "1 rank, 2 x 4 accumulated"),
                   ("four", "4 ranks x 2")):
    same(two, losses(name), f"2 ranks x 4 vs {what}")
    same(losses("two", "val_loss"), losses(name, "val_loss"), f"val_loss, 2 ranks vs {what}")
    print(f"2 ranks x 4 == {what}: 12 steps and 3 val losses within 1e-5")
assert len(losses("two", "val_loss")) == 3, "val_loss after steps 4, 8, 12"
same(losses("local_two"), losses("local_one"), "local shuffle, 2 ranks vs 1 rank")
same(losses("local_two", "val_loss"), losses("local_one", "val_loss"), "local shuffle val_loss")
assert losses("local_two") != two, "the local shuffle visits another order"
print("local shuffle: 2 ranks == 1 rank")
assert two[-1] < two[0] - 0.5, "the loss should fall"
PY
# Identical runs print identical metric text (timing fields aside).
cut -d, -f1-4 "$work/two.jsonl" > "$work/a"; cut -d, -f1-4 "$work/two_again.jsonl" > "$work/b"
cmp "$work/a" "$work/b"
echo "rerun: identical step, loss, lr, grad_norm text"
