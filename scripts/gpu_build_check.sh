#!/usr/bin/env bash
# Compiles the GPU code where no GPU is present (step 3 of scripts/test.sh):
# the kernels (kernels/gpu/*.cu) with nvcc for sm_90 (-DCONDENSE_CUDA=ON) and
# with Debian's hipcc for gfx90a (-DCONDENSE_HIP=ON; one target each keeps CI
# short: the builds' defaults add sm_80 and gfx940, same source; hipcc and
# libamdhip64-dev installed where missing and root), plus the C++ that only
# GPU builds compile (runtime/gpu_forward.cpp, train/gpu_graph.cpp,
# train/gpu_trainer.cpp, dist/nccl_allreduce.cpp (CUDA with NCCL), tests/test_gpu.cpp, tests/test_gpu_training.cpp, bench/bench_gpu.cpp,
# bench/bench_train.cpp). Objects only: linking and running need a GPU machine
# (bench/run_gpu.sh). A toolchain that is absent and cannot be installed is
# reported and skipped; a compile error fails.
# Usage: scripts/gpu_build_check.sh [cuda] [hip]   (default both)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
which=("$@")
[ ${#which[@]} -eq 0 ] && which=(cuda hip)
objects=(src/runtime/gpu_forward.cpp.o src/train/gpu_graph.cpp.o src/train/gpu_trainer.cpp.o src/core/device.cpp.o)
check() {  # build-dir cmake-flag
  local b="$1"; shift
  cmake -S "$here" -B "$b" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$b" -j2 --target condense_kernels_gpu
  local extra=()
  # NCCL (data-parallel GPU ranks) where the CUDA build found it
  if grep -q '^CONDENSE_NCCL_LIBRARY:FILEPATH=/' "$b/CMakeCache.txt" 2>/dev/null && grep -q '^CONDENSE_MPI:BOOL=ON' "$b/CMakeCache.txt"; then
    extra=(src/dist/nccl_allreduce.cpp.o)
  fi
  make -s -C "$b" "${objects[@]}" ${extra[@]+"${extra[@]}"}
  make -s -C "$b/tests" test_gpu.cpp.o test_gpu_training.cpp.o
  make -s -C "$b/bench" bench_gpu.cpp.o bench_train.cpp.o
}
for w in "${which[@]}"; do
  case "$w" in
    cuda)
      if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null; then
        check "$here/build-cuda-check" -DCONDENSE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90
        echo "gpu_build_check: CUDA build compiles"
      else
        echo "gpu_build_check: no nvcc (/usr/local/cuda/bin/nvcc): CUDA build not checked" >&2
      fi ;;
    hip)
      if ! command -v hipcc >/dev/null && [ "$(id -u)" = 0 ]; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hipcc libamdhip64-dev >/dev/null; } ||
          echo "gpu_build_check: hipcc could not be installed" >&2
      fi
      if command -v hipcc >/dev/null; then
        check "$here/build-hip-check" -DCONDENSE_HIP=ON -DCONDENSE_HIP_ARCHS=gfx90a
        echo "gpu_build_check: HIP build compiles"
      else
        echo "gpu_build_check: no hipcc: HIP build not checked" >&2
      fi ;;
    *) echo "gpu_build_check: unknown backend '$w' (cuda, hip)" >&2; exit 2 ;;
  esac
done
