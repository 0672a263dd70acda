#!/usr/bin/env bash
# Builds dptrain with sanitizers (no CUDA: the sanitizers do not see device code) and runs the
# CPU tests (ctest labels unit and mpi; extra arguments go to ctest, e.g. -j2 or -R NAME):
#   scripts/check.sh asan    AddressSanitizer + UndefinedBehaviorSanitizer, clang, into
#                            build-asan (the build scripts/fuzz.sh uses too); CI runs it
#   scripts/check.sh tsan    ThreadSanitizer, into build-tsan (suppressions for MPI internals
#                            only)
# Prints the build and test times. Environment: JOBS (default nproc).
set -euo pipefail
kind="${1:?usage: check.sh asan|tsan [ctest args]}"
shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "$kind" in
  asan) sanitize="address,undefined" ;;
  tsan) sanitize="thread" ;;
  *)
    echo "check: unknown '$kind': asan or tsan" >&2
    exit 2
    ;;
esac
"$root/scripts/install-deps.sh"
t0=$(date +%s)
if [[ $kind == asan ]]; then
  source "$root/scripts/sanitizers/asan-build.sh"
  asan_configure "$root"
  build="$asan_build"
  cmake --build "$build" -j "${JOBS:-$(nproc)}" > "$build/build.log" 2>&1 ||
    { tail -60 "$build/build.log"; exit 1; }
else
  build="$root/build-$kind"
  BUILD_DIR="$build" JOBS="${JOBS:-$(nproc)}" "$root/scripts/build.sh" -DDPT_CUDA=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPT_SANITIZE="$sanitize"
fi
t1=$(date +%s)
echo "check $kind: built in $((t1 - t0)) s"
supp="$root/scripts/sanitizers"
# A finding ends the process with an error (halt_on_error), so ctest reports the test failed.
# intercept_tls_get_addr=0: the runtimes of clang before 17 (and gcc before 14) take some
# dynamic TLS blocks of glibc >= 2.25 for glibc 2.19's layout and read a bogus range from them,
# and LeakSanitizer's tracer then dies with "Tracer caught signal 11" (google/sanitizers#1322;
# seen here in every 4-rank run of comm_mpi_test, in Open MPI's dlopen'd components). Static
# TLS, ours, is still scanned for pointers.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1:fast_unwind_on_malloc=0:intercept_tls_get_addr=0"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="suppressions=$supp/tsan.supp:halt_on_error=1:second_deadlock_stack=1"
# Open MPI's shared-memory transport maps memory ASan cannot follow; TCP/self is enough here.
# Its components stay loaded at exit, so that what they keep until then is named in leak
# reports (and matched by lsan.supp) instead of "<unknown module>".
export OMPI_MCA_btl="self,tcp" OMPI_MCA_mca_base_component_disable_dlclose=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rc=0
(cd "$build" && ctest --output-on-failure -L "unit|mpi" -LE "slurm|gpu" --timeout 1200 "$@") || rc=$?
t2=$(date +%s)
echo "check $kind: build $((t1 - t0)) s, tests $((t2 - t1)) s, exit $rc"
exit $rc
