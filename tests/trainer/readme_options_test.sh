#!/usr/bin/env bash
# The README's option table keeps up with the option table: every option `train --help` lists
# (which the option table generates) has a row in README.md, and every row names a real option.
set -euo pipefail
bin="${DPT_BIN:?set by ctest}"
src="${DPT_SOURCE:?set by ctest}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
help="$(timeout 60 "${MPIEXEC:-mpiexec}" -n 1 "$bin/train" --help)"
mapfile -t listed < <(grep -oE '^  (-h \[ )?--[a-z0-9-]+' <<<"$help" | grep -oE -- '--[a-z0-9-]+' |
  grep -vx -- '--help' | sort -u)
mapfile -t rows < <(grep -oE '^\| `--[a-z0-9-]+' "$src/README.md" | grep -oE -- '--[a-z0-9-]+' |
  sort -u)
# A row may name several options (`--beta1`, `--beta2`, `--adam-eps`).
mapfile -t named < <(grep -E '^\| `--' "$src/README.md" | grep -oE -- '`--[a-z0-9-]+' |
  tr -d '`' | sort -u)
fails=0
for o in "${listed[@]}"; do
  # Not `printf | grep -q`: grep -q may exit before printf has written all, and under pipefail
  # printf's SIGPIPE would fail the pipeline (a flaky "missing" on a loaded machine).
  if ! grep -qx -- "$o" < <(printf '%s\n' "${named[@]}"); then
    echo "FAIL $o: in train --help but not in README.md's option table"; fails=$((fails + 1))
  fi
done
for o in "${rows[@]}"; do
  if ! grep -qx -- "$o" < <(printf '%s\n' "${listed[@]}"); then
    echo "FAIL $o: a row of README.md's option table, but train has no such option"
    fails=$((fails + 1))
  fi
done
echo "${#listed[@]} options in --help, ${#named[@]} named in README.md; $fails missing"
[[ ${#listed[@]} -gt 40 && $fails -eq 0 ]]
