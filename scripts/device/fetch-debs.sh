#!/usr/bin/env bash
# Run HERE (Debian 12 with apt): downloads the Debian packages that a fresh device machine lacks
# (MPI, HDF5, Boost, GoogleTest, OpenBLAS and the libraries they load) into .debs/ at the repo
# root, for scripts/device/prepare.sh to unpack THERE. See scripts/device/README.md.
#
# .debs/core      always unpacked there: what the device image has none of.
# .debs/fallback  unpacked there only when the image lacks a library's soname: the common system
#                 libraries that libcurl (HDF5's dependency), OpenBLAS and hwloc load. Where the
#                 image has them, its own (newer) copies are used and nothing is shadowed.
# The lists come from ldd over what dptrain loads (libmpi, orterun, opal_wrapper, the Open MPI
# and PMIx plugins it uses, libhdf5_serial, libboost_program_options, libboost_json, OpenBLAS) on Debian 12,
# mapped to packages with dpkg -S, then checked with LD_DEBUG=files on an MPI test run against
# the unpacked prefix (libpmix needs libmunge; hwloc's optional plugins stay behind); libc6, libgcc-s1, libstdc++6 and zlib1g are left out (every
# image with a C++ compiler has them). Open MPI's InfiniBand/UCX/OFI/PSM plugins stay unloadable
# (one GPU per machine needs none); prepare.sh silences their load errors.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/.debs"

core=(
  # MPI (Open MPI 4.1 with its PMIx, hwloc and libevent)
  libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libpmix2 libhwloc15
  libevent-core-2.1-7 libevent-pthreads-2.1-7 libmunge2
  # HDF5 (serial) and its compression filters
  libhdf5-dev libhdf5-103-1 libsz2 libaec0
  # Boost.Program_options and Boost.JSON (1.81): headers, the CMake configs, the libraries
  # (Boost.JSON's config asks for Boost.Container's)
  libboost1.81-dev libboost-program-options1.81-dev libboost-program-options1.81.0
  libboost-json1.81-dev libboost-json1.81.0 libboost-container1.81-dev libboost-container1.81.0
  libboost-system1.81-dev
  # GoogleTest (static libraries and CMake config)
  libgtest-dev
  # OpenBLAS, OpenMP build
  libopenblas-openmp-dev libopenblas0-openmp
)
fallback=(
  libgfortran5 libquadmath0 libgomp1 libnuma1 libudev1 libnl-3-200 libnl-route-3-200
  libcurl4 libssl3 libnghttp2-14 libidn2-0 librtmp1 libssh2-1 libpsl5 libbrotli1 libzstd1
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
  libldap-2.5-0 libsasl2-2 libgnutls30 libhogweed6 libnettle8 libgmp10 libp11-kit0 libtasn1-6
  libunistring2 libffi8
)

command -v apt-get >/dev/null || { echo "fetch-debs: needs apt-get (a Debian 12 machine)" >&2; exit 2; }
if [[ -r /etc/os-release ]] && ! grep -q '^VERSION_ID="12"' /etc/os-release; then
  echo "fetch-debs: warning: this is not Debian 12; the lists were made for bookworm" >&2
fi

# Keep .debs out of git without touching the committed .gitignore: it is a per-session
# download, carried to the device explicitly (run's carry), never committed.
exclude="$(git -C "$root" rev-parse --git-path info/exclude 2>/dev/null || true)"
if [[ -n $exclude ]]; then
  [[ $exclude = /* ]] || exclude="$root/$exclude"
  mkdir -p "$(dirname "$exclude")"
  grep -qxF '/.debs/' "$exclude" 2>/dev/null || echo '/.debs/' >>"$exclude"
fi

download() {  # download DIR PACKAGE...: skips packages already there (same name, any version)
  local dir="$1"
  shift
  mkdir -p "$dir"
  local missing=()
  for p in "$@"; do
    compgen -G "$dir/${p}_*.deb" >/dev/null || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  (cd "$dir" && apt-get download "${missing[@]}")
}
download "$out/core" "${core[@]}"
download "$out/fallback" "${fallback[@]}"

# The newest glibc symbol version any shipped library needs: prepare.sh refuses an older glibc
# with a clear message instead of a loader error halfway through the build.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for d in "$out"/core/*.deb "$out"/fallback/*.deb; do dpkg-deb -x "$d" "$scratch"; done
# (objdump fails on the few non-ELF files that match; xargs then exits 123, which is fine here.)
glibc_need=$({ find "$scratch" -type f \( -name '*.so*' -o -path '*/bin/*' \) -print0 |
  xargs -0 objdump -T 2>/dev/null || true; } | grep -o 'GLIBC_2\.[0-9]*' | sort -uV | tail -1 |
  cut -d_ -f2)
{
  echo "# written by scripts/device/fetch-debs.sh on $(date -u +%F)"
  echo "debian=$(. /etc/os-release && echo "$VERSION_ID")"
  echo "glibc_min=${glibc_need:-2.17}"
  echo "unpacked_mib=$(du -sm "$scratch" | cut -f1)"
} >"$out/MANIFEST"

echo "fetch-debs: $(ls "$out"/core/*.deb | wc -l) core + $(ls "$out"/fallback/*.deb | wc -l) fallback packages in $out"
echo "fetch-debs: $(du -sh "$out" | cut -f1) (.deb files), needs glibc >= ${glibc_need:-2.17} there"
