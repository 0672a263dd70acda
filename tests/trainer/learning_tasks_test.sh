#!/usr/bin/env bash
# A learning test per task on a small real slice, short enough for CI: a Vision Transformer on
# 4,000 Fashion-MNIST images classifies 1,000 test images well above chance (10%; over 60%)
# after 4 epochs; a byte-level text classifier of three fortune files (food, linux, startrek)
# beats always guessing their majority class on held-out fortunes by 15 points. Both on 2
# ranks. (The CO2 forecaster against
# persistence: learning_series_test.sh.)
# shellcheck source-path=SCRIPTDIR source=../script_test_lib.sh
source "$(dirname "$0")/../script_test_lib.sh"
fm=/usr/share/datasets/fashion-mnist
[[ -f $fm/train-images-idx3-ubyte.gz ]] ||
  { echo "no $fm: install dataset-fashion-mnist (scripts/install-deps.sh)"; exit 1; }
"$bin/prepare-data" fashion-mnist --out "$work/fm" --train-samples 4000 --val-samples 1000 \
  --shard-samples 1500 > /dev/null
fortunes=/usr/share/games/fortunes
"$bin/prepare-data" fortune-classes --out "$work/ft" --seq-len 96 \
  "$fortunes/food" "$fortunes/linux" "$fortunes/startrek" > "$work/ft.log"
cat "$work/ft.log"

train() {  # train NAME DATA [ARGS...]
  local name="$1" data="$2"
  shift 2
  timeout 300 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" --threads 1 \
    --data "$work/$data/train" --val-data "$work/$data/val" --val-samples 100000 \
    --log-every 1000 --metrics "$work/$name.jsonl" "$@" > "$work/$name.log"
  grep "val_" "$work/$name.log" | tail -n 1
}
train image fm --patch 7 --pool mean --d-model 48 --n-layer 2 --n-head 4 --global-batch 64 \
  --micro-batch 32 --steps 250 --lr 3e-3 --warmup-steps 10 --weight-decay 0.05
train text ft --pool mean --d-model 32 --n-layer 2 --n-head 4 --global-batch 32 \
  --micro-batch 16 --steps 300 --lr 3e-3 --warmup-steps 10 --weight-decay 0.05

"$py" - "$work" <<'PY'
import glob, json, sys
import h5py
w = sys.argv[1]
def last(name):
    return [r for r in map(json.loads, open(f"{w}/{name}.jsonl")) if "val_accuracy" in r][-1]
acc = last("image")["val_accuracy"]
assert acc > 0.60, f"Fashion-MNIST slice: accuracy {acc:.3f}, expected well above chance (0.10)"
print(f"image: held-out accuracy {acc:.3f} (chance 0.10)")
base = float(h5py.File(glob.glob(f"{w}/ft/val/*.h5")[0], "r").attrs["majority_accuracy"])
acc = last("text")["val_accuracy"]
assert acc > base + 0.15, f"fortunes: accuracy {acc:.3f}, majority class {base:.3f}"
print(f"text: held-out accuracy {acc:.3f} against the majority class's {base:.3f}")
PY
