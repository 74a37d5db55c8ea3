#!/usr/bin/env bash
# The tests (the README's second command; CI runs it through .ci/run):
#  1. the Release build and every test (ctest labels: unit, real_data, isa, demo,
#     browser, client, interop, mpi (2 ranks under mpirun); real_data skips without ../shared/data);
#  2. a clang build without MPI, with AddressSanitizer + UndefinedBehaviorSanitizer + libFuzzer
#     (build-san/): the unit tests again, then every fuzz target for
#     CONDENSE_FUZZ_SECONDS (60) with its seeds and saved regressions (docs/FUZZING.md);
#  3. the GPU code compiled for CUDA (nvcc) and HIP (hipcc) where no GPU is present
#     (scripts/gpu_build_check.sh; docs/GPU.md).
# Usage: scripts/test.sh [--fast]    --fast: step 1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
ctest --test-dir build -j2 --output-on-failure --timeout 900
[ "${1:-}" = "--fast" ] && exit 0
bash scripts/setup.sh build-san --sanitize
ctest --test-dir build-san -j2 -L 'unit|fuzz' --output-on-failure --timeout 900
bash scripts/gpu_build_check.sh
