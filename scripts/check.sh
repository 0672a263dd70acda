#!/usr/bin/env bash
# Builds dptrain with sanitizers into build-<name> (no CUDA: the sanitizers do not see device
# code) and runs the CPU tests (ctest labels unit and mpi; extra arguments go to ctest):
#   scripts/check.sh asan    AddressSanitizer + UndefinedBehaviorSanitizer
#   scripts/check.sh tsan    ThreadSanitizer (suppressions for MPI internals only)
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
build="$root/build-$kind"
t0=$(date +%s)
BUILD_DIR="$build" JOBS="${JOBS:-$(nproc)}" "$root/scripts/build.sh" -DDPT_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPT_SANITIZE="$sanitize"
t1=$(date +%s)
supp="$root/scripts/sanitizers"
# A finding ends the process with an error (halt_on_error), so ctest reports the test failed.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1:fast_unwind_on_malloc=0"
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
