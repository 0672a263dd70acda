#!/usr/bin/env bash
# [Model family] end to end through bin/train on sample shards written by h5py with /inputs,
# /labels or /targets and format_version alone (text with /lengths): for image classification,
# series regression (float16 held-out series) and padded text classification, 2 ranks x
# micro-batch 4, 1 rank x 8 and 1 rank accumulating 2 x 4 print the same per-step losses and
# validation loss, accuracy or RMSE (within 1e-5 relative) on the same global batch; the shard
# index spares the second start its scan; an image classifier stopped at step 6 on 2
# ranks and resumed on 1 continues the uninterrupted run's losses; bad samples and options that
# contradict the data stop with exit 2 and one message naming the file or the option.
# shellcheck source-path=SCRIPTDIR source=../script_test_lib.sh
source "$(dirname "$0")/../script_test_lib.sh"

"$py" - "$work" <<'PY'
import sys, h5py, numpy as np
w = sys.argv[1]
rng = np.random.default_rng(5)
import os
for d in ("img/train", "img/val", "ser/train", "ser/val", "txt/train", "txt/val", "bad"):
    os.makedirs(f"{w}/{d}", exist_ok=True)

def images(n):  # class k: quadrant k brighter, on noise
    y = rng.integers(0, 4, n)
    x = rng.integers(0, 90, (n, 8, 8, 1)).astype(np.uint8)
    for i, k in enumerate(y):
        r, c = divmod(int(k), 2)
        x[i, 4*r:4*r+4, 4*c:4*c+4, 0] += 120
    return x, y
def series(n):  # targets: the mean of feature 0 and the last value of feature 1
    x = rng.normal(size=(n, 12, 2)).astype(np.float32)
    t = np.stack([x[:, :, 0].mean(1), x[:, -1, 1]], 1).astype(np.float32)
    return x, t
def texts(n):  # label: whether token 3 occurs among the valid tokens; padding is all 3s
    ln = rng.integers(4, 17, n)
    x = rng.integers(4, 20, (n, 16))
    y = rng.integers(0, 2, n)
    for i in range(n):
        if y[i]: x[i, rng.integers(0, ln[i])] = 3
        x[i, ln[i]:] = 3
    return x.astype(np.int32), y, ln

def write(path, inputs, labels=None, targets=None, lengths=None):
    with h5py.File(path, "w") as f:
        f.create_dataset("inputs", data=inputs)
        if labels is not None: f.create_dataset("labels", data=labels)
        if targets is not None: f.create_dataset("targets", data=targets)
        if lengths is not None: f.create_dataset("lengths", data=lengths)
        f.attrs["format_version"] = 1

for s in range(2):
    write(f"{w}/img/train/{s}.h5", *images(96))
    x, t = series(96); write(f"{w}/ser/train/{s}.h5", x, targets=t)
    x, y, ln = texts(96); write(f"{w}/txt/train/{s}.h5", x, labels=y, lengths=ln)
write(f"{w}/img/val/v.h5", *images(40))
x, t = series(40); write(f"{w}/ser/val/v.h5", x.astype(np.float16), targets=t)  # float16 reads too
x, y, ln = texts(40); write(f"{w}/txt/val/v.h5", x, labels=y, lengths=ln)
PY

common=(--d-model 16 --n-layer 2 --n-head 2 --steps 10 --global-batch 8 --lr 3e-3 --warmup-steps 2
        --threads 1 --log-every 100 --val-every 5 --val-samples 40)
run() {  # run NAME DATA RANKS MICRO_BATCH [ARGS...]
  local name="$1" data="$2" ranks="$3" micro="$4"
  shift 4
  timeout 120 "$mpiexec" -n "$ranks" --oversubscribe --bind-to none "$bin/train" "${common[@]}" \
    --data "$work/$data/train" --val-data "$work/$data/val" --micro-batch "$micro" \
    --metrics "$work/$name.jsonl" "$@" > "$work/$name.log"
}
for task in img ser txt; do
  extra=()
  [[ $task == img ]] && extra=(--patch 2)
  run "${task}_two" "$task" 2 4 "${extra[@]}"
  run "${task}_one" "$task" 1 8 "${extra[@]}"
  run "${task}_accum" "$task" 1 4 "${extra[@]}"
done
# [Shard index]: the first run scanned both training shards, the next found them in the index.
grep -q "(2 shard(s) scanned now)" "$work/img_two.log"
grep -q "(0 shard(s) scanned now)" "$work/img_one.log"
grep -q "image 8x8x1 in 2x2 patches, bidirectional, cls pooling, classify head of 4 classes" \
  "$work/img_two.log"
grep -q "series of 2 feature(s), bidirectional, cls pooling, regress head of 2 targets" \
  "$work/ser_two.log"
grep -q "tokens with padding, bidirectional, cls pooling, classify head of 2 classes" \
  "$work/txt_two.log"

# Stopped at step 6 on 2 ranks, resumed on 1: the uninterrupted run's losses.
run img_stop img 2 4 --patch 2 --ckpt-dir "$work/ck" --stop-at-step 6
run img_resumed img 1 8 --patch 2 --ckpt-dir "$work/ck" --resume auto
grep -q "resume" "$work/img_resumed.jsonl"

"$py" - "$work" <<'PY'
import json, sys
w = sys.argv[1]
def values(name, key):
    return [r[key] for r in map(json.loads, open(f"{w}/{name}.jsonl")) if key in r]
def same(a, b, what):
    assert len(a) == len(b) and a, f"{what}: {len(a)} vs {len(b)} values"
    for i, (x, y) in enumerate(zip(a, b), 1):
        assert abs(x - y) <= 1e-5 * abs(y) + 1e-12, f"{what}, value {i}: {x} vs {y}"
for task, metric in (("img", "val_accuracy"), ("ser", "val_rmse"), ("txt", "val_accuracy")):
    two = values(f"{task}_two", "loss")
    assert len(two) == 10
    for other, what in ((f"{task}_one", "1 rank x 8"), (f"{task}_accum", "1 rank, 2 x 4")):
        for key in ("loss", "val_loss", metric):
            same(values(f"{task}_two", key), values(other, key), f"{task} {key}: 2 ranks x 4 vs {what}")
    assert len(values(f"{task}_two", metric)) == 2, f"{task}: {metric} after steps 5 and 10"
    print(f"{task}: 2 ranks x 4 == 1 rank x 8 == 1 rank 2 x 4 ({metric} too)")
conf = [r for r in map(json.loads, open(f"{w}/img_two.jsonl")) if r.get("event") == "confusion"]
assert len(conf) == 1 and conf[0]["step"] == 10, conf
m = conf[0]["matrix"]
assert len(m) == 4 and all(len(r) == 4 for r in m) and sum(map(sum, m)) == 40, m
acc = values("img_two", "val_accuracy")[-1]
assert abs(sum(m[i][i] for i in range(4)) / 40 - acc) < 1e-9, "the diagonal is the accuracy"
same(values("img_two", "loss")[6:], values("img_resumed", "loss"), "resumed on 1 rank vs uninterrupted")
print("image classifier stopped at 6 on 2 ranks, resumed on 1: the same losses")
PY

# Bad input and contradictions: exit 2, one message naming the file or the option.
expect_usage() {  # expect_usage PATTERN ARGS...
  local pattern="$1"
  shift
  set +e
  timeout 60 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" "${common[@]}" \
    --micro-batch 4 "$@" > "$work/err.out" 2> "$work/err.log"
  local rc=$?
  set -e
  [[ $rc == 2 ]] || { echo "expected exit 2, got $rc for $*"; cat "$work/err.log"; exit 1; }
  grep -q -- "$pattern" "$work/err.log" || { echo "no '$pattern' in:"; cat "$work/err.log"; exit 1; }
  [[ $(grep -c "error" "$work/err.log") == 1 ]] || { echo "not one message:"; cat "$work/err.log"; exit 1; }
}
"$py" - "$work" <<'PY'
import sys, h5py, numpy as np
w = sys.argv[1]
with h5py.File(f"{w}/bad/label.h5", "w") as f:
    f["inputs"] = np.zeros((16, 8, 8), np.uint8); f["labels"] = np.arange(16) % 3
    f.attrs["format_version"] = 1; f.attrs["num_classes"] = 2
with h5py.File(f"{w}/bad/nan.h5", "w") as f:
    x = np.zeros((16, 5, 2), np.float32); x[3, 1, 0] = np.nan
    f["inputs"] = x; f["targets"] = np.zeros(16, np.float32); f.attrs["format_version"] = 1
PY
expect_usage "bad/label.h5: /labels\[2\] = 2 is outside \[0, 2)" --data "$work/bad/label.h5"
expect_usage "bad/nan.h5: /inputs sample 3 holds NaN" --data "$work/bad/nan.h5"
expect_usage "\-\-task lm predicts\|--task lm, but\|pass --task classify" --data "$work/img/train" --task lm
expect_usage "pass --task classify or leave --task out" --data "$work/img/train" --task regress
expect_usage "\-\-patch 3 does not divide" --data "$work/img/train" --patch 3
expect_usage "\-\-seq-len 50, but the samples" --data "$work/ser/train" --seq-len 50
echo "bad samples and contradictions: exit 2 with one message each"
