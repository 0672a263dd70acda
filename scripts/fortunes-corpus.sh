#!/usr/bin/env bash
# Writes Debian's fortunes (English text under /usr/share/games/fortunes) into one training
# file: scripts/fortunes-corpus.sh OUT. The "%" separators between fortunes are kept as they are.
set -euo pipefail
out="${1:?usage: fortunes-corpus.sh OUT}"
src=/usr/share/games/fortunes
if [[ ! -d $src ]]; then
  echo "fortunes-corpus: $src not found: install Debian's 'fortunes' package (scripts/install-deps.sh)." >&2
  exit 2
fi
mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
# The plain files only: *.dat are indexes and *.u8 are symlinks to the same text.
find "$src" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | LC_ALL=C sort | xargs cat > "$tmp"
mv "$tmp" "$out"
echo "fortunes-corpus: $(wc -c < "$out") bytes in $out"
