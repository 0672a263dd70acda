#!/usr/bin/env bash
# libFuzzer over the readers of untrusted input (tests/fuzz): builds the targets with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer into build-asan (no CUDA; the build
# scripts/check.sh asan uses too), then fuzzes.
#   scripts/fuzz.sh TARGET SECONDS   one target: fuzz_json_line, fuzz_config, fuzz_shard,
#                                    fuzz_ckpt_meta
#   scripts/fuzz.sh all SECONDS      each target in turn
# Each target starts from its seed corpus (tests/fuzz/corpus/TARGET) and the regressions
# (tests/fuzz/regressions/TARGET) and keeps what it learns in build-asan/corpus/TARGET across
# runs. A finding (crash, sanitizer report, wrong answer, timeout) is saved as
# build-asan/findings/TARGET-* (crashes inside HDF5 itself go to build-asan/findings/hdf5/,
# see [Fuzz triage] below); the script then exits 1: fix it and copy the file into
# tests/fuzz/regressions/TARGET, which ctest runs in this build. Prints one line per target:
# executions per second, coverage (edges), features, corpus size. Environment: JOBS.
set -euo pipefail
target="${1:?usage: fuzz.sh TARGET|all SECONDS}"
seconds="${2:?usage: fuzz.sh TARGET|all SECONDS}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
all=(fuzz_json_line fuzz_config fuzz_shard fuzz_ckpt_meta)
if [[ $target == all ]]; then
  targets=("${all[@]}")
elif [[ " ${all[*]} " == *" $target "* ]]; then
  targets=("$target")
else
  echo "fuzz: unknown target '$target': all or one of ${all[*]}" >&2
  exit 2
fi
"$root/scripts/install-deps.sh"
t0=$(date +%s)
source "$root/scripts/sanitizers/asan-build.sh"
asan_configure "$root"
build="$asan_build"
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target "${targets[@]}" > "$build/build.log" 2>&1 ||
  { tail -40 "$build/build.log"; exit 1; }
echo "fuzz: built ${targets[*]} in $(($(date +%s) - t0)) s"
# allocator_may_return_null: HDF5 asks for absurd sizes on malformed files and handles the null
# that glibc's malloc returns; leaks inside libhdf5 on its error paths are HDF5's.
# intercept_tls_get_addr=0: as in scripts/check.sh (LeakSanitizer's tracer and glibc's DTLS).
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=1:allocator_may_return_null=1:fast_unwind_on_malloc=0:intercept_tls_get_addr=0"
export LSAN_OPTIONS="suppressions=$root/scripts/sanitizers/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# [Fuzz triage] HDF5 1.10.8 itself crashes on some malformed files (an invalid free while it
# releases a damaged link table, for one). libFuzzer therefore runs in fork mode, going on after
# a crash; each crash is replayed once and sorted by the first frame outside the sanitizer
# runtime and libc: in libhdf5 it is the library's (kept in findings/hdf5/, reported, not ours
# to fix: our own files are checksummed before HDF5 parses them, [Meta checksum]); anywhere else
# it is ours, and the script fails.
first_frame() {  # first_frame TARGET INPUT: "hdf5", "ours: FRAME" or "not reproduced"
  local out frame
  out=$("$build/bin/$1" -runs=1 "$2" 2>&1) && { echo "not reproduced"; return; }
  # The first frame in libhdf5 or in a source file of this repository decides.
  frame=$(grep -E '^ +#[0-9]+ ' <<< "$out" |
    grep -E "libhdf5|$root/[a-z_]+/[^ ]*\.(cpp|h):[0-9]" | head -n 1)
  if [[ $frame == *libhdf5* ]]; then
    echo hdf5
  else
    echo "ours: $(grep -m1 -E 'ERROR|not a UsageError|runtime error' <<< "$out") at ${frame:-?}"
  fi
}
rc=0
printf '%-16s %8s %10s %8s %8s %8s %8s %8s %s\n' target seconds "exec/s" edges features corpus ours \
  "HDF5's" "not-repro"
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  findings="$build/findings"
  mkdir -p "$corpus" "$findings/hdf5" "$findings/new-$t"
  log="$build/$t.log"
  # -timeout: an input that takes 10 s is a finding (a hang); -rss_limit_mb: so is 2 GB.
  "$build/bin/$t" -fork=1 -ignore_crashes=1 -ignore_timeouts=0 -ignore_ooms=0 \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$findings/new-$t/" \
    "$corpus" "$root/tests/fuzz/corpus/$t" "$root/tests/fuzz/regressions/$t" > "$log" 2>&1 ||
    true
  last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1)
  edges=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<< "$last")
  feats=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<< "$last")
  runs=$(sed -n 's/^#\([0-9]*\):.*/\1/p' <<< "$last")
  size=$(find "$corpus" -type f | wc -l)
  ours=0
  theirs=0
  flaky=0
  for f in "$findings/new-$t"/*; do
    [[ -f $f ]] || continue
    verdict=$(first_frame "$t" "$f")
    if [[ $verdict == hdf5 ]]; then
      theirs=$((theirs + 1))
      mv "$f" "$findings/hdf5/$t-$(basename "$f")"
    elif [[ $verdict == "not reproduced" ]]; then
      # A crash of the forked run that one run of its input does not repeat (state the
      # library kept across inputs): kept for a look, not counted as ours.
      flaky=$((flaky + 1))
      mv "$f" "$findings/hdf5/$t-unreproduced-$(basename "$f")"
    else
      ours=$((ours + 1))
      mv "$f" "$findings/$t-$(basename "$f")"
      echo "    $t: $(basename "$f"): $verdict"
    fi
  done
  speed=$(awk -v r="${runs:-0}" -v s="$seconds" 'BEGIN { printf "%.0f", r / s }')
  printf '%-16s %8s %10s %8s %8s %8s %8s %8s %s\n' "$t" "$seconds" "$speed" "${edges:-?}" \
    "${feats:-?}" "$size" "$ours" "$theirs" "$flaky"
  [[ $ours == 0 ]] || rc=1
done
exit $rc
