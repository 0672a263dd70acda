#!/usr/bin/env bash
# Installs what is missing, builds, and trains the default small model on 2 MPI ranks on
# Debian's fortunes corpus, printing progress. Extra arguments go to train (they override
# scripts/demo.ini). Environment: RANKS (2), DATA (the corpus file), METRICS (JSON Lines out).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build="${BUILD_DIR:-$root/build}"
data="${DATA:-$root/data/fortunes.txt}"
metrics="${METRICS:-$root/data/demo-metrics.jsonl}"
[[ -s $data ]] || "$root/scripts/fortunes-corpus.sh" "$data"

ranks="${RANKS:-2}"
mpi_flags=(-n "$ranks" --bind-to none)
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
if ((ranks > $(nproc))); then mpi_flags+=(--oversubscribe); fi

exec mpiexec "${mpi_flags[@]}" "$build/bin/train" \
  --config "$root/scripts/demo.ini" --data "$data" --metrics "$metrics" "$@"
