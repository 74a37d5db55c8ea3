#!/usr/bin/env bash
# Installs the Debian 12 packages condense needs (as root, only what is missing)
# and configures + builds it. Usage: scripts/setup.sh [build-dir] [--main | --sanitize] [extra cmake args]
# --main builds only the `condense` binary (what scripts/demo.sh runs); without
# it, the tests and benchmarks too. --sanitize builds with clang, AddressSanitizer,
# UndefinedBehaviorSanitizer and libFuzzer (tests and fuzz targets, no benchmarks).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"; shift || true
target=()
sanitize=0
if [ "${1:-}" = "--main" ]; then target=(--target condense); shift; fi
if [ "${1:-}" = "--sanitize" ]; then sanitize=1; shift; fi

pkgs=(g++ cmake make pkg-config libeigen3-dev libhdf5-dev nlohmann-json3-dev libcli11-dev
      libzstd-dev zlib1g-dev libgtest-dev libbenchmark-dev libsentencepiece-dev libcpp-httplib-dev
      libopenmpi-dev openmpi-bin fortunes-min fortunes)  # fortunes: the English corpus the main job's default teacher learns from
[ $sanitize -eq 1 ] && pkgs+=(clang libclang-rt-14-dev libomp-dev)  # clang's sanitizer and libFuzzer runtimes, its OpenMP
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

# The server's client test (tests/client) runs the official OpenAI Node SDK:
# Node and npm from Debian where there is no node at all (a NodeSource node
# brings its own npm, and Debian's npm package would conflict with it).
if [ ${#target[@]} -eq 0 ] && [ $sanitize -eq 0 ] && ! command -v node >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing nodejs npm (for tests/client)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; } || echo "setup: nodejs/npm could not be installed; the client test will skip" >&2
  else
    echo "setup: node is missing (apt-get install nodejs npm as root); the client test will skip" >&2
  fi
fi

extra=()
if [ $sanitize -eq 1 ]; then
  # -O1 with line tables: sanitizer reports with file:line at a third of -O3's build time.
  export CC=clang CXX=clang++
  # Without MPI: this build is also the check that everything runs single-process when MPI is absent.
  extra+=(-DCONDENSE_SANITIZE=ON -DCONDENSE_FUZZ=ON -DCONDENSE_BENCH=OFF -DCONDENSE_MPI=OFF -DCMAKE_BUILD_TYPE=None "-DCMAKE_CXX_FLAGS=-O1 -gline-tables-only")
elif [ "${CI:-}" = "true" ]; then
  extra+=(-DCONDENSE_WERROR=ON)   # CI builds with warnings as errors (GCC's; clang's differ)
fi
# Quiet configure, except condense's own notes (e.g. why real_data tests will skip); all of it on failure.
if ! log=$(cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release ${extra[@]+"${extra[@]}"} "$@" 2>&1); then
  echo "$log" >&2
  exit 1
fi
grep '^-- condense:' <<<"$log" || true
cmake --build "$build" -j2 ${target[@]+"${target[@]}"}
# The client test's packages, pinned by tests/client/package-lock.json (openai@6).
if [ ${#target[@]} -eq 0 ] && [ $sanitize -eq 0 ] && command -v npm >/dev/null && [ ! -d "$here/tests/client/node_modules/openai" ]; then
  (cd "$here/tests/client" && npm ci --no-audit --no-fund --loglevel=error) || echo "setup: npm ci failed in tests/client; the client test will try again" >&2
fi
# The interop tests' llama.cpp (node-llama-cpp's prebuilt linux-x64 CPU build only) and Hugging Face
# tokenizers, pinned by tests/interop/package-lock.json (`npm install --no-save` keeps to the lock; `npm ci`
# refuses it because node-llama-cpp lists optional platform packages the registry does not have).
# Only where the tests can run (they need stories260K from ../shared/data).
if [ ${#target[@]} -eq 0 ] && [ $sanitize -eq 0 ] && command -v npm >/dev/null && [ ! -d "$here/tests/interop/node_modules/tokenizers" ] &&
   [ -d "${CONDENSE_DATA_DIR:-$here/../shared/data}/models/stories260K" ]; then
  (cd "$here/tests/interop" && npm install --no-save --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error) ||
    echo "setup: npm ci failed in tests/interop; the interop test will try again" >&2
fi
