#!/usr/bin/env bash
# Prepares the real data of a demo task as sample shards (docs/data-format.md):
#   scripts/sample-data.sh image  OUT   Fashion-MNIST (Debian's dataset-fashion-mnist)
#   scripts/sample-data.sh text   OUT   fortunes labelled with their file (Debian's fortunes)
#   scripts/sample-data.sh series OUT   weekly Mauna Loa CO2 (statsmodels' data set)
# writing OUT/train and OUT/val with bin/prepare-data (BUILD_DIR, default build/; or DPT_BIN).
# Installs the Debian package it needs when missing (as root, or with sudo). statsmodels' CO2
# record is taken from python3-statsmodels when installed, else extracted from its package
# (apt-get download), which works where installing it would conflict.
set -euo pipefail
task="${1:?usage: sample-data.sh image|text|series OUT}"
out="${2:?usage: sample-data.sh image|text|series OUT}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${DPT_BIN:-${BUILD_DIR:-$root/build}/bin}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo -n env DEBIAN_FRONTEND=noninteractive"; fi
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2> /dev/null | grep -q "install ok installed"; }
need() {  # need PACKAGE: installs it when missing
  installed "$1" && return 0
  echo "sample-data: installing $1"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "$1" > /dev/null
}

case "$task" in
  image)
    need dataset-fashion-mnist
    "$bin/prepare-data" fashion-mnist --out "$out" --overwrite
    ;;
  text)
    need fortunes
    src=/usr/share/games/fortunes
    classes=(art computers food law linux politics science startrek)
    "$bin/prepare-data" fortune-classes --out "$out" --overwrite --seq-len 128 \
      "${classes[@]/#/$src/}"
    ;;
  series)
    csv=/usr/lib/python3/dist-packages/statsmodels/datasets/co2/co2.csv
    if [[ ! -f $csv ]]; then
      csv="$out/co2.csv"
      if [[ ! -f $csv ]]; then
        echo "sample-data: extracting co2.csv from Debian's python3-statsmodels package"
        tmp="$(mktemp -d)"
        chmod 755 "$tmp"  # apt-get download fetches as user _apt
        trap 'rm -rf "$tmp"' EXIT
        $SUDO apt-get update -qq
        (cd "$tmp" && apt-get download python3-statsmodels > /dev/null)
        dpkg-deb -x "$tmp"/python3-statsmodels_*.deb "$tmp/x"
        mkdir -p "$out"
        cp "$tmp/x/usr/lib/python3/dist-packages/statsmodels/datasets/co2/co2.csv" "$csv"
      fi
    fi
    "$bin/prepare-data" co2 --out "$out" --from "$csv" --overwrite
    ;;
  *)
    echo "sample-data: unknown task '$task': image, text or series" >&2
    exit 2
    ;;
esac
