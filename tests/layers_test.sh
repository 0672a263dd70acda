#!/usr/bin/env bash
# The house's arrows point down (docs/architecture.md): every source folder includes only its own
# headers and those of the folders below it, and every folder CMake builds is in the table below.
# Fails naming the file and the include that points up or sideways.
set -euo pipefail
src="${DPT_SOURCE:?set by ctest}"
declare -A allowed=(
  [common]="common"
  [storage]="storage common"
  [kernels]="kernels common"
  [comm]="comm common"
  [datasets]="datasets storage common"
  [checkpoint]="checkpoint storage comm common"
  [job]="job comm kernels common"
  [trainer]="trainer checkpoint job datasets comm kernels storage common"
)
fails=0
for dir in $(sed -n 's/^add_subdirectory(\([a-z_]*\))$/\1/p' "$src/CMakeLists.txt"); do
  [[ $dir == tests ]] && continue
  if [[ -z ${allowed[$dir]+x} ]]; then
    echo "FAIL $dir/: a folder CMake builds, missing from this test's table of layers"
    fails=$((fails + 1))
    continue
  fi
  while IFS= read -r hit; do
    file="${hit%%:*}"
    to="$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$hit")"
    if [[ " ${allowed[$dir]} " != *" $to "* ]]; then
      echo "FAIL ${file#"$src"/}: includes $to/ (${dir}/ may include: ${allowed[$dir]})"
      fails=$((fails + 1))
    fi
  done < <(grep -rHE '^#include "[a-z_]+/' "$src/$dir" --include='*.h' --include='*.cpp' \
             --include='*.cu' --include='*.cuh' || true)
done
checked=$(sed -n 's/^add_subdirectory(\([a-z_]*\))$/\1/p' "$src/CMakeLists.txt" | grep -vc '^tests$')
echo "$checked folders checked, $fails include(s) against the layers"
[[ $fails -eq 0 ]]
