#!/usr/bin/env bash
# Configures and builds dptrain into ${BUILD_DIR:-build}. Extra arguments go to cmake's
# configure step (e.g. -DDPT_CUDA=OFF).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
jobs="${JOBS:-$(nproc)}"
cmake -S "$root" -B "$build" -G Ninja "$@" >/dev/null
cmake --build "$build" -j "$jobs"
