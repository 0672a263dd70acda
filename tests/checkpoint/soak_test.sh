#!/usr/bin/env bash
# The short forms of scripts/soak.sh that CI runs: 3 kills of a random rank at a random moment
# (each rerun ends with the uninterrupted run's parameters) and 10 random corruptions of the
# newest checkpoint (each resume falls back and ends identical, or refuses; no silent load).
# Fixed seeds, so a failure reruns the same faults.
set -euo pipefail
src="${DPT_SOURCE:?set by ctest}"
SEED=18 bash "$src/scripts/soak.sh" kill 3
SEED=18 bash "$src/scripts/soak.sh" corrupt 10
