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

# The server's client test (tests/client) runs the official OpenAI Node SDK:
# Node and npm from Debian where there is no node at all (a NodeSource node
# brings its own npm, and Debian's npm package would conflict with it).
if [ ${#target[@]} -eq 0 ] && ! command -v node >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing nodejs npm (for tests/client)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; } || echo "setup: nodejs/npm could not be installed; the client test will skip" >&2
  else
    echo "setup: node is missing (apt-get install nodejs npm as root); the client test will skip" >&2
  fi
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
# The client test's packages, pinned by tests/client/package-lock.json (openai@6).
if [ ${#target[@]} -eq 0 ] && command -v npm >/dev/null && [ ! -d "$here/tests/client/node_modules/openai" ]; then
  (cd "$here/tests/client" && npm ci --no-audit --no-fund --loglevel=error) || echo "setup: npm ci failed in tests/client; the client test will try again" >&2
fi
