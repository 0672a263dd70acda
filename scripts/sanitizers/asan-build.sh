# Sourced by scripts/check.sh and scripts/fuzz.sh: the one AddressSanitizer and
# UndefinedBehaviorSanitizer build both use, so that CI compiles it once. clang (libFuzzer needs
# it), no CUDA (the sanitizers do not see device code), RelWithDebInfo, the fuzz targets on
# (their coverage instrumentation costs the other tests little). Sets asan_build.
# asan_configure ROOT: installs clang when missing and configures ROOT/build-asan.
asan_configure() {
  local root="$1"
  asan_build="$root/build-asan"
  # clang's OpenMP runtime (libomp-dev) is a recommendation of clang, which not every apt
  # installs.
  if ! command -v clang++ > /dev/null || ! compgen -G "/usr/lib/llvm-*/lib/libomp.so" > /dev/null; then
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libomp-dev > /dev/null
  fi
  # A directory configured by another compiler (an older gcc build) starts over.
  if [[ -f $asan_build/CMakeCache.txt ]] &&
    ! grep -q '^CMAKE_CXX_COMPILER:FILEPATH=.*clang++' "$asan_build/CMakeCache.txt"; then
    rm -rf "$asan_build"
  fi
  CC=clang CXX=clang++ cmake -S "$root" -B "$asan_build" -G Ninja -DDPT_CUDA=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPT_SANITIZE=address,undefined -DDPT_FUZZ=ON > /dev/null
}
