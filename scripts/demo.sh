#!/usr/bin/env bash
# Installs what is missing, builds, prepares Debian's fortunes corpus as HDF5 shards once
# (bin/prepare-data), and trains the default small model on 2 MPI ranks from them, printing
# progress and the validation loss. Extra arguments go to train (they override
# scripts/demo.ini). Environment: RANKS (2), DATA (the prepared directory, holding train/ and
# val/), METRICS (JSON Lines out).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build="${BUILD_DIR:-$root/build}"
data="${DATA:-$root/data/fortunes}"
metrics="${METRICS:-$root/data/demo-metrics.jsonl}"
if [[ ! -d $data/train ]]; then BUILD_DIR="$build" "$root/scripts/fortunes-corpus.sh" "$data"; fi

ranks="${RANKS:-2}"
mpi_flags=(-n "$ranks" --bind-to none)
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
if ((ranks > $(nproc))); then mpi_flags+=(--oversubscribe); fi

exec mpiexec "${mpi_flags[@]}" "$build/bin/train" \
  --config "$root/scripts/demo.ini" --data "$data/train" --val-data "$data/val" \
  --metrics "$metrics" "$@"
