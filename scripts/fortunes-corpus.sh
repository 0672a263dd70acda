#!/usr/bin/env bash
# Prepares Debian's fortunes (English text under /usr/share/games/fortunes) as HDF5 shards:
# scripts/fortunes-corpus.sh OUT writes OUT/train and OUT/val (1 in 20 fortunes held out), one
# document per fortune. Needs bin/prepare-data (BUILD_DIR, default build/; or DPT_BIN).
set -euo pipefail
out="${1:?usage: fortunes-corpus.sh OUT}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${DPT_BIN:-${BUILD_DIR:-$root/build}/bin}"
src=/usr/share/games/fortunes
if [[ ! -d $src ]]; then
  echo "fortunes-corpus: $src not found: install Debian's 'fortunes' package (scripts/install-deps.sh)." >&2
  exit 2
fi
# The plain files only: *.dat are indexes and *.u8 are symlinks to the same text.
mapfile -t files < <(find "$src" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | LC_ALL=C sort)
"$bin/prepare-data" --out "$out" --doc-separator % --val-fraction 0.05 --shard-tokens 2000000 \
  --overwrite "${files[@]}"
