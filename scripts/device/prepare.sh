#!/usr/bin/env bash
# Run THERE (a fresh device machine, in the repo root, with .debs carried): unpacks the Debian
# packages from scripts/device/fetch-debs.sh into a prefix of their own (never over /), writes an
# environment file to source, then configures build-device/ with CUDA and builds it.
#
# Usage: scripts/device/prepare.sh [TARGET...]     (default: every target)
# Environment (all optional):
#   DPT_DEPS=/opt/dpt-deps      where the packages are unpacked
#   DPT_ENV_FILE=/tmp/dpt-env.sh
#   BUILD_DIR=<repo>/build-device   JOBS=<nproc>   DPT_CUDA=ON   DPT_CUDA_ARCHITECTURES=90
#   DPT_PREPARE_NO_BUILD=1      write the environment file and configure only
#   DPT_FORCE_FALLBACK=1        unpack .debs/fallback even where the image has those libraries
# Idempotent: a second run finds the prefix stamped with the same package set and unpacks
# nothing; CMake and ninja then do only what changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
debs="$root/.debs"
P="${DPT_DEPS:-/opt/dpt-deps}"
arch=x86_64-linux-gnu
L="$P/usr/lib/$arch"
envfile="${DPT_ENV_FILE:-/tmp/dpt-env.sh}"
build="${BUILD_DIR:-$root/build-device}"
jobs="${JOBS:-$(nproc)}"
t_start=$SECONDS

say() { echo "prepare: $*" >&2; }
die() {
  echo "prepare: error: $*" >&2
  exit 2
}

[[ $(uname -m) == x86_64 ]] || die "the .debs are amd64; this machine is $(uname -m)"
[[ -d $debs/core && -r $debs/MANIFEST ]] ||
  die "no $debs/core: run scripts/device/fetch-debs.sh on the development machine, then call run with carry [\".debs\"]"

# --- glibc: the packages are Debian 12's --------------------------------------------------------
need="$(sed -n 's/^glibc_min=//p' "$debs/MANIFEST")"
have="$(getconf GNU_LIBC_VERSION | awk '{print $2}')"
if [[ $(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1) != "$need" ]]; then
  die "this image has glibc $have; the Debian 12 packages need $need. Build here instead and carry binaries (scripts/device/README.md, plan B)"
fi

# --- unpack -----------------------------------------------------------------------------------
# dpkg-deb -x where dpkg exists (Debian and Ubuntu images); else ar + tar, which every image with
# binutils and xz has.
unpack() {  # unpack DEB
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$1" "$P"
  else
    local member
    member="$(ar t "$1" | grep '^data\.tar')"
    case "$member" in
      *.xz) ar p "$1" "$member" | xz -dc | tar -x -C "$P" ;;
      *.zst) ar p "$1" "$member" | zstd -dc | tar -x -C "$P" ;;
      *.gz) ar p "$1" "$member" | gzip -dc | tar -x -C "$P" ;;
      *) die "cannot unpack $1 ($member): install dpkg or the matching decompressor" ;;
    esac
  fi
}
contents() {  # contents DEB: the paths in the package
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb --fsys-tarfile "$1" | tar -t
  else
    local member
    member="$(ar t "$1" | grep '^data\.tar')"
    ar p "$1" "$member" | tar -t -J 2>/dev/null || ar p "$1" "$member" | tar -t --zstd
  fi
}
# True when the image's loader already finds every shared-library soname the package ships (in
# ld.so.cache, and the file it names is there and not empty).
image_has_libs() {  # image_has_libs DEB
  local names name path cache
  names="$(contents "$1" | grep -E '/lib/.*\.so\.[0-9]+$' | xargs -r -n1 basename | sort -u)"
  [[ -n $names ]] || return 1
  cache="$(ldconfig -p 2>/dev/null || true)"
  for name in $names; do
    path="$(awk -v n="$name" '$1 == n { print $NF; exit }' <<<"$cache")"
    [[ -n $path && -s $path ]] || return 1
  done
}

stamp="$(cd "$debs" && ls core fallback 2>/dev/null | sha256sum | cut -c1-16)-${DPT_FORCE_FALLBACK:-0}"
if [[ -r $P/.dpt-stamp && $(cat "$P/.dpt-stamp") == "$stamp" ]]; then
  say "packages already unpacked in $P"
else
  if [[ -e $P ]]; then
    # Only ever remove a prefix this script made.
    [[ -r $P/.dpt-stamp || -z $(ls -A "$P") ]] ||
      die "$P exists and was not made by this script; set DPT_DEPS to another folder"
    rm -rf "$P"
  fi
  mkdir -p "$P"
  n=0
  for d in "$debs"/core/*.deb; do
    unpack "$d"
    n=$((n + 1))
  done
  used=()
  for d in "$debs"/fallback/*.deb; do
    [[ -e $d ]] || continue
    if [[ ${DPT_FORCE_FALLBACK:-0} == 1 ]] || ! image_has_libs "$d"; then
      unpack "$d"
      used+=("$(basename "$d" | cut -d_ -f1)")
    fi
  done
  say "unpacked $n core packages into $P; fallback packages used: ${used[*]:-none (the image has them)}"
  echo "$stamp" >"$P/.dpt-stamp"
fi

# --- the names Debian makes through update-alternatives (dpkg -x runs no scripts) --------------
mkdir -p "$P/bin"
for name in mpiexec mpirun; do ln -sfn "$P/usr/bin/orterun" "$P/bin/$name"; done
# opal_wrapper picks its mode from the name it was called by (mpicxx -> mpicxx-wrapper-data.txt).
for name in mpicc mpicxx mpic++; do ln -sfn "$P/usr/bin/opal_wrapper" "$P/bin/$name"; done

# --- NCCL from the PyTorch wheel ----------------------------------------------------------------
# The wheel ships include/nccl.h and lib/libnccl.so.2 only; CMake's find_library wants libnccl.so.
nccl_home=""
nvidia_dirs="$(python3 -c 'import nvidia, os; print(os.pathsep.join(nvidia.__path__))' 2>/dev/null || true)"
if [[ -n $nvidia_dirs ]]; then
  hdr="$(find ${nvidia_dirs//:/ } -name nccl.h -path '*/include/*' 2>/dev/null | head -1)"
  lib="$(find ${nvidia_dirs//:/ } -name 'libnccl.so*' -path '*/lib/*' 2>/dev/null | sort | head -1)"
  if [[ -n $hdr && -n $lib ]]; then
    nccl_home="$P/nccl"
    mkdir -p "$nccl_home/lib"
    ln -sfn "$(dirname "$hdr")" "$nccl_home/include"
    ln -sfn "$lib" "$nccl_home/lib/libnccl.so"
    ln -sfn "$lib" "$nccl_home/lib/libnccl.so.2"
    say "NCCL from the Python wheel: $lib"
  fi
fi
[[ -n $nccl_home ]] || say "no NCCL in python3's nvidia wheels; CMake looks under the CUDA toolkit"

# --- CUDA ----------------------------------------------------------------------------------------
nvcc="$(command -v nvcc || true)"
[[ -n $nvcc || ! -x /usr/local/cuda/bin/nvcc ]] || nvcc=/usr/local/cuda/bin/nvcc
[[ -n $nvcc ]] || say "warning: no nvcc on PATH or in /usr/local/cuda/bin; DPT_CUDA=ON will fail"
cuda_root="$(dirname "$(dirname "$(readlink -f "${nvcc:-/usr/local/cuda/bin/nvcc}")")")"
if ! compgen -G "$cuda_root/lib64/libcublasLt.so" >/dev/null &&
  ! compgen -G "$cuda_root/targets/x86_64-linux/lib/libcublasLt.so" >/dev/null; then
  say "warning: no libcublasLt.so under $cuda_root: CMake's CUDA::cublasLt will be missing"
fi

# --- the environment file -----------------------------------------------------------------------
cat >"$envfile" <<EOF
# Written by scripts/device/prepare.sh: source it before running dptrain's binaries or ctest.
export DPT_DEPS='$P'
export DPT_ORIG_LD_LIBRARY_PATH="\${DPT_ORIG_LD_LIBRARY_PATH-\${LD_LIBRARY_PATH-}}"
export PATH='$P/bin:$P/usr/bin':"\$PATH"
export LD_LIBRARY_PATH='$L:$L/openblas-openmp${nccl_home:+:$nccl_home/lib}':"\$DPT_ORIG_LD_LIBRARY_PATH"
# Open MPI and PMIx were built for /usr (PMIx for /usr/lib/$arch/pmix2, with absolute libdirs):
# these relocate them into the prefix, and point Open MPI at Debian's default MCA parameters.
export OPAL_PREFIX='$P/usr' OPAL_SYSCONFDIR='$P/etc/openmpi'
export PMIX_PREFIX='$L/pmix2' PMIX_EXEC_PREFIX='$L/pmix2' PMIX_LIBDIR='$L/pmix2/lib'
export PMIX_PKGLIBDIR='$L/pmix2/lib/pmix' PMIX_DATADIR='$L/pmix2/share'
export PMIX_MCA_mca_base_component_path='$L/pmix2/lib/pmix'
# One machine, run as root, no ssh: the isolated launcher (the rsh one refuses to start without
# ssh), shared memory between ranks without the kernel's cross-memory attach (often refused in
# VMs and containers), and quiet about the InfiniBand/UCX/OFI plugins whose libraries were not
# brought along.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_plm=isolated OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_mca_base_component_show_load_errors=0 OMPI_MCA_rmaps_base_oversubscribe=1
export PATH="\$PATH:$cuda_root/bin"
${nccl_home:+export DPT_NCCL_HOME='$nccl_home'}
EOF
# shellcheck disable=SC1090
source "$envfile"
say "environment: source $envfile"

# --- checks before CMake: every path handed to it exists ---------------------------------------
for f in "$P/bin/mpicxx" "$P/bin/mpiexec" "$P/usr/include/hdf5/serial/hdf5.h" \
  "$L/hdf5/serial/libhdf5.so" "$L/cmake/Boost-1.81.0/BoostConfig.cmake" \
  "$L/cmake/GTest/GTestConfig.cmake" "$L/openblas-openmp/libopenblas.so" \
  "$P/usr/include/$arch/openblas-openmp/cblas.h"; do
  [[ -e $f ]] || die "missing $f after unpacking (is .debs complete? rerun fetch-debs.sh)"
done
"$P/bin/mpicxx" --showme:version >/dev/null 2>&1 || die "mpicxx from the prefix does not run: $("$P/bin/mpicxx" --showme:version 2>&1 | head -3)"

# --- configure and build ------------------------------------------------------------------------
cmake_args=(
  -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
  -DDPT_CUDA="${DPT_CUDA:-ON}" -DDPT_CUDA_ARCHITECTURES="${DPT_CUDA_ARCHITECTURES:-90}"
  -DMPI_CXX_COMPILER="$P/bin/mpicxx" -DMPIEXEC_EXECUTABLE="$P/bin/mpiexec"
  # Debian's HDF5 keeps headers in include/hdf5/serial and the library in lib/<arch>/hdf5/serial;
  # FindHDF5 searches each HDF5_ROOT entry with those suffixes (and only them: no system HDF5).
  # The h5cc wrapper is not brought along: it holds absolute /usr paths.
  -DHDF5_ROOT="$P/usr/include;$L" -DHDF5_NO_FIND_PACKAGE_CONFIG_FILE=ON
  -DBoost_DIR="$L/cmake/Boost-1.81.0" -DGTest_DIR="$L/cmake/GTest"
  -DDPT_OPENBLAS_LIBRARY="$L/openblas-openmp/libopenblas.so"
  -DDPT_OPENBLAS_INCLUDE_DIR="$P/usr/include/$arch/openblas-openmp"
)
[[ -n $nvcc ]] && cmake_args+=(-DCMAKE_CUDA_COMPILER="$nvcc")
[[ -n $nccl_home ]] && cmake_args+=(-DDPT_NCCL_HOME="$nccl_home")
mkdir -p "$build"
say "configuring $build"
cmake "${cmake_args[@]}" >"$build/dpt-configure.log" 2>&1 || {
  tail -40 "$build/dpt-configure.log" >&2
  die "CMake failed (log: $build/dpt-configure.log)"
}
grep -E '^-- (BLAS|NCCL|dptrain):' "$build/dpt-configure.log" >&2 || true
if [[ ${DPT_PREPARE_NO_BUILD:-0} == 1 ]]; then
  say "configured in $((SECONDS - t_start)) s (DPT_PREPARE_NO_BUILD=1: not building)"
  exit 0
fi
targets=()
for t in "$@"; do targets+=(--target "$t"); done
say "building ${*:-all targets} with $jobs jobs (log: $build/dpt-build.log)"
if ! cmake --build "$build" -j "$jobs" "${targets[@]}" >"$build/dpt-build.log" 2>&1; then
  grep -E -A4 'error|FAILED' "$build/dpt-build.log" | head -80 >&2
  die "build failed (log: $build/dpt-build.log)"
fi
tail -n 2 "$build/dpt-build.log" >&2
say "done in $((SECONDS - t_start)) s: binaries in $build/bin; source $envfile first"
