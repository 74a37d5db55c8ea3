#!/usr/bin/env bash
# Installs the Debian 12 packages condense needs (as root, only what is missing)
# and configures + builds it. Usage: scripts/setup.sh [build-dir] [--main] [extra cmake args]
# --main builds only the `condense` binary (what scripts/demo.sh runs); without
# it, the tests and benchmarks too.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"; shift || true
target=()
if [ "${1:-}" = "--main" ]; then target=(--target condense); shift; fi

pkgs=(g++ cmake make pkg-config libeigen3-dev libhdf5-dev nlohmann-json3-dev libcli11-dev
      libzstd-dev zlib1g-dev libgtest-dev libbenchmark-dev libsentencepiece-dev libcpp-httplib-dev
      fortunes-min fortunes)  # fortunes: the English corpus the main job's default teacher learns from
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then echo "setup: need root to apt-get install: ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

extra=()
[ "${CI:-}" = "true" ] && extra+=(-DCONDENSE_WERROR=ON)   # CI builds with warnings as errors
# Quiet configure, except condense's own notes (e.g. why real_data tests will skip); all of it on failure.
if ! log=$(cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release "${extra[@]}" "$@" 2>&1); then
  echo "$log" >&2
  exit 1
fi
grep '^-- condense:' <<<"$log" || true
cmake --build "$build" -j2 "${target[@]}"
