#!/usr/bin/env bash
# The CO2 forecaster learns: on the weekly Mauna Loa record (statsmodels' data set, extracted by
# scripts/sample-data.sh from Debian's python3-statsmodels package), 2 ranks training for 300
# steps forecast the held-out tail's next 4 weeks with a lower RMSE than persistence (next
# weeks = this week). Skipped (77) when the package can be neither found nor downloaded.
# shellcheck source-path=SCRIPTDIR source=../script_test_lib.sh
source "$(dirname "$0")/../script_test_lib.sh"
if ! DPT_BIN="$bin" "$(dirname "$0")/../../scripts/sample-data.sh" series "$work/co2" \
  > "$work/prep.log" 2>&1; then
  cat "$work/prep.log"
  if grep -q "apt-get\|download\|python3-statsmodels" "$work/prep.log"; then
    echo "SKIP: statsmodels' CO2 record could not be obtained from apt"
    exit 77
  fi
  exit 1
fi
grep "prepare-data" "$work/prep.log"
timeout 300 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" --threads 1 \
  --data "$work/co2/train" --val-data "$work/co2/val" --val-samples 100000 --pool mean \
  --d-model 32 --n-layer 2 --n-head 4 --global-batch 32 --micro-batch 16 --steps 300 --lr 1e-3 \
  --warmup-steps 20 --weight-decay 0.01 --log-every 1000 --metrics "$work/m.jsonl" > "$work/train.log"
"$py" - "$work" <<'PY'
import json, sys
import h5py
w = sys.argv[1]
rmse = [r for r in map(json.loads, open(f"{w}/m.jsonl")) if "val_rmse" in r][-1]["val_rmse"]
base = float(h5py.File(f"{w}/co2/val/co2_val.h5", "r").attrs["persistence_rmse"])
assert rmse < 0.9 * base, f"CO2: held-out RMSE {rmse:.4f}, persistence {base:.4f}"
print(f"series: held-out RMSE {rmse:.4f} against persistence {base:.4f}")
PY
