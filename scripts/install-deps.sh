#!/usr/bin/env bash
# Installs what dptrain needs to build and test on a fresh Debian 12 machine (as root, or with
# sudo). Does nothing for packages already present. nvcc/NCCL are optional (under /usr/local/cuda).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libopenmpi-dev openmpi-bin
  libhdf5-dev
  libboost-program-options1.81-dev libboost-json1.81-dev
  libgtest-dev
  libopenblas-openmp-dev
  fortunes-min fortunes dataset-fashion-mnist
  python3 python3-h5py python3-numpy python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  # -n: fail at once instead of prompting (CI has no stdin); env: sudo resets the environment.
  if command -v sudo >/dev/null; then SUDO="sudo -n env DEBIAN_FRONTEND=noninteractive"; else
    echo "install-deps: missing ${missing[*]}; run as root or install them with apt-get." >&2
    exit 2
  fi
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
