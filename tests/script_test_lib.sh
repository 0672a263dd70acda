# Sourced by the script tests: ctest's settings, mpiexec allowed as root, a work directory that
# is removed (and background jobs killed) at exit, and HDF5 shards of a random-words corpus.
# shellcheck shell=bash disable=SC2034
set -euo pipefail
bin="${DPT_BIN:?set by ctest}"
mpiexec="${MPIEXEC:-mpiexec}"
py="${PYTHON:-/usr/bin/python3}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
# Run inside a Slurm job (salloc, sbatch), a test must not act on that job (a requeue).
for v in "${!SLURM_@}"; do unset "$v"; done
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2> /dev/null || true; rm -rf "$work"' EXIT

# words_shards SEED [FILES [DOCS [VAL_FRACTION]]]: $work/data/train (and val/) from
# words_corpus.py's JSON Lines, through prepare-data.
words_shards() {
  "$py" "$(dirname "${BASH_SOURCE[0]}")/words_corpus.py" "$work" --files "${2:-2}" \
    --docs "${3:-80}" --seed "$1"
  "$bin/prepare-data" --out "$work/data" --val-fraction "${4:-0}" --shard-tokens 8000 \
    --threads 2 "$work"/text*.jsonl > "$work/prepare.log"
}
