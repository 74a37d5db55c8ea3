#!/usr/bin/env bash
# Issue 16's GPU numbers in one run on a machine with an NVIDIA GPU (~10 min on
# 16 cores): builds with -DCONDENSE_CUDA=ON, runs the gpu-labelled tests (the
# kernels against float64 references, the GPU engine against the CPU's, the
# real stories260K greedy output), bench_gpu (decode GEMV on the stories110M
# and tinyllama-1.1B shapes vs the HBM bandwidth measured in the same run),
# bench_train on the GPU (bf16 training of the stories110M shape: MFU against
# a bf16 GEMM timed in the same run; a distillation step, stories15M from
# stories110M), then `condense bench --device cuda` on a random
# tinyllama-1.1B int4 g32 model at 64 concurrent sequences. JSON goes to bench/results/gpu-*.json; the test
# log to bench/results/gpu-tests-*.txt.
# Usage: bench/run_gpu.sh [build-dir]   (CONDENSE_GPU_QUICK=1: skip the 1.1B engine run)
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build-cuda}"
stamp=$(date -u +%Y%m%d-%H%M%S)
res="$here/bench/results"
mkdir -p "$res"
jobs=$(nproc)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "run_gpu: nvidia-smi failed" >&2
# The build's Debian packages (scripts/setup.sh's list): say what is missing before spending device time.
missing=()
for p in g++ cmake make pkg-config libeigen3-dev libhdf5-dev nlohmann-json3-dev libcli11-dev libzstd-dev zlib1g-dev \
         libgtest-dev libbenchmark-dev libsentencepiece-dev libcpp-httplib-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "run_gpu: missing packages: ${missing[*]}; trying apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { echo "run_gpu: cannot install them here" >&2; exit 1; }
fi
[ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null || { echo "run_gpu: no nvcc" >&2; exit 1; }
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCONDENSE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null || exit 1
make -C "$build" -j"$jobs" condense test_gpu bench_gpu bench_train 2>&1 | grep -E 'error|warning: ' | head -40
[ -x "$build/condense" ] && [ -x "$build/bench_gpu" ] || { echo "run_gpu: build failed" >&2; exit 1; }
(cd "$build" && ctest -L gpu --output-on-failure --timeout 600) 2>&1 | tee "$res/gpu-tests-$stamp.txt" | tail -30
"$build/bench_gpu" --out "$res/gpu-kernels-$stamp.json" --reps 20
"$build/bench_train" --shape stories110M --device cuda --bf16 --batch 16 --seq 1024 --reps 4 > "$res/gpu-train-stories110M-bf16-$stamp.json"
"$build/bench_train" --shape stories110M --device cuda --batch 8 --seq 1024 --reps 3 > "$res/gpu-train-stories110M-f32-$stamp.json"
"$build/bench_train" --shape stories15M --teacher-shape stories110M --device cuda --bf16 --batch 32 --seq 256 --reps 4 \
  > "$res/gpu-distill-stories15M-from-110M-bf16-$stamp.json"
if [ -z "${CONDENSE_GPU_QUICK:-}" ]; then
  m="$build/bench-models"
  mkdir -p "$m"
  [ -f "$m/tinyllama/model.safetensors" ] || "$build/condense" init --shape tinyllama-1.1B --seed 1 --out "$m/tinyllama" >/dev/null
  [ -f "$m/tinyllama-int4.cpk" ] || "$build/condense" quantize "$m/tinyllama" --to int4 --out "$m/tinyllama-int4.cpk" >/dev/null
  "$build/condense" bench --model "$m/tinyllama-int4.cpk" --device cuda --max-concurrency 64 --num-prompts 256 \
    --input-len 128 --output-len 128 --ignore-eos --max-seqs 64 --max-batch-tokens 4096 --kv-memory 8G \
    --out "$res/gpu-load-tinyllama-int4-c64-$stamp.json" >/dev/null
  "$build/condense" bench "$m/tinyllama-int4.cpk" --device cuda --batch 1 --batch 16 --batch 64 --context 128 --prefill 128 \
    --out "$res/gpu-offline-tinyllama-int4-$stamp.json" >/dev/null
fi
ls -la "$res"/gpu-*"$stamp"*
