#!/usr/bin/env bash
# Installs what is missing, builds, prepares the data once, and trains on 2 MPI ranks from it,
# printing progress and the held-out metrics.
#   scripts/demo.sh [--task lm]   a small GPT on Debian's fortunes as byte-level token shards
#                                 (scripts/demo.ini), printing the validation loss
#   scripts/demo.sh --task image  a small Vision Transformer on Fashion-MNIST (demo-image.ini)
#   scripts/demo.sh --task text   fortunes classified by the file they come from (demo-text.ini)
#   scripts/demo.sh --task series forecasting the weekly Mauna Loa CO2 record (demo-series.ini)
# Every run ends by plotting its metrics (scripts/plot-metrics.py) next to the metrics file; the
# language model then writes a sample of text (bin/generate), the last three print the held-out accuracy against always guessing the majority class, or
# the RMSE against persistence (next weeks = this week). Extra arguments go to train (they
# override the .ini). Environment: RANKS (2), DATA (the prepared directory, holding train/ and
# val/), METRICS (JSON Lines out).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
task=lm
if [[ ${1:-} == --task ]]; then
  task="${2:?--task needs lm, image, text or series}"
  shift 2
elif [[ ${1:-} == --task=* ]]; then
  task="${1#--task=}"
  shift
fi
case "$task" in
  lm | image | text | series) ;;
  *)
    echo "demo: --task $task: choose lm, image, text or series" >&2
    exit 2
    ;;
esac
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build="${BUILD_DIR:-$root/build}"
if [[ $task == lm ]]; then
  data="${DATA:-$root/data/fortunes}"
  config="$root/scripts/demo.ini"
  metrics="${METRICS:-$root/data/demo-metrics.jsonl}"
  if [[ ! -d $data/train ]]; then BUILD_DIR="$build" "$root/scripts/fortunes-corpus.sh" "$data"; fi
else
  data="${DATA:-$root/data/$task}"
  config="$root/scripts/demo-$task.ini"
  metrics="${METRICS:-$root/data/demo-$task-metrics.jsonl}"
  if [[ ! -d $data/train ]]; then BUILD_DIR="$build" "$root/scripts/sample-data.sh" "$task" "$data"; fi
fi

ranks="${RANKS:-2}"
mpi_flags=(-n "$ranks" --bind-to none)
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
if ((ranks > $(nproc))); then mpi_flags+=(--oversubscribe); fi

# The demo's checkpoints start over each time (the language model's ends the demo's text).
ckpt="${metrics%-metrics.jsonl}-ckpt"
rm -rf "$ckpt"
train=(mpiexec "${mpi_flags[@]}" "$build/bin/train" --config "$config" --data "$data/train"
  --val-data "$data/val" --metrics "$metrics" --ckpt-dir "$ckpt" "$@")
"${train[@]}"
# The run as a picture: loss, validation, learning rate, gradient norm, throughput, MFU.
"${PYTHON:-/usr/bin/python3}" "$root/scripts/plot-metrics.py" "$metrics" -o "${metrics%.jsonl}.png"
if [[ $task == lm ]]; then
  # A sample of what the model learned, continuing a prompt ([Decoder], [Sampling]).
  echo "demo: bin/generate $ckpt --prompt \"The \" --max-tokens 200 --temperature 0.8 --top-k 40"
  "$build/bin/generate" "$ckpt" --prompt "The " --max-tokens 200 --temperature 0.8 --top-k 40 \
    --seed 7
  exit 0
fi
# The held-out result beside its baseline, from the metrics file and the held-out shard.
"${PYTHON:-/usr/bin/python3}" - "$metrics" "$data/val" "$task" <<'PY'
import glob, json, sys
import h5py
metrics, val, task = sys.argv[1:]
rows = [json.loads(line) for line in open(metrics)]
last = [r for r in rows if "val_loss" in r][-1]
attrs = h5py.File(sorted(glob.glob(f"{val}/*.h5"))[0], "r").attrs
if task == "series":
    base = float(attrs["persistence_rmse"])
    rmse = last["val_rmse"]
    print(f"demo: held-out RMSE {rmse:.4f} against persistence {base:.4f} "
          f"({100 * (1 - rmse / base):+.1f}%: {'beats' if rmse < base else 'does not beat'} "
          f"persistence), x {float(attrs['scale_ppm']):.3f} ppm")
else:
    acc = last["val_accuracy"]
    line = f"demo: held-out accuracy {100 * acc:.2f}% after step {last['step']}"
    if "majority_accuracy" in attrs:
        base = float(attrs["majority_accuracy"])
        line += f", majority class {100 * base:.2f}% ({100 * (acc - base):+.2f} points)"
    print(line)
PY
