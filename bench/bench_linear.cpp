// The packed f32 linear kernels at the shapes of stories110M and TinyLlama:
// decode GEMV (m = 1, memory-bound: compare bytes_per_second with bench_membw)
// and prefill GEMM (m = 128, compute-bound: compare GFLOPS with this machine's
// f32 FMA peak, ~117 GFLOP/s per thread per ../shared/MACHINE.md).
// Threads: OMP_NUM_THREADS; report 1 thread as the headline (the machine is shared).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "core/ops/linear.h"

using namespace condense;

namespace {

void run_linear(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  std::mt19937 g(1);
  std::normal_distribution<float> d;
  std::vector<float> w(size_t(n * k)), x(size_t(m * k)), y(size_t(m * n));
  for (auto& v : w) v = d(g);
  for (auto& v : x) v = d(g);
  Tensor wt = Tensor::from_f32(w, {n, k});
  // Decode reads each weight once per token, so GEMV cycles through enough
  // copies (>= 512 MB) that no pass finds its matrix in the 32 MB L3.
  const int64_t copies = m == 1 ? std::max<int64_t>(1, (int64_t(512) << 20) / (n * k * 4)) : 1;
  std::vector<ops::PackedLinear> packed;
  for (int64_t c = 0; c < copies; ++c) packed.push_back(ops::PackedLinear::pack({&wt}));
  w.clear();
  size_t next = 0;
  for (auto _ : state) {
    packed[next].apply({x.data(), m, k, k}, {y.data(), m, n, n});
    next = (next + 1) % packed.size();
    benchmark::DoNotOptimize(y.data());
  }
  const double it = double(state.iterations());
  state.SetBytesProcessed(int64_t(it * double(n * k) * 4));
  state.counters["GFLOPS"] = benchmark::Counter(it * 2.0 * double(m * n * k), benchmark::Counter::kIsRate,
                                                benchmark::Counter::kIs1000);
}

}  // namespace

// stories110M: fused qkv 2304x768, o 768x768, fused gate/up 4096x768, down 768x2048, head 32000x768
BENCHMARK(run_linear)->Name("gemv")->ArgNames({"m", "n", "k"})
    ->Args({1, 2304, 768})->Args({1, 4096, 768})->Args({1, 768, 2048})->Args({1, 32000, 768})
    ->Args({1, 11264, 2048})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(run_linear)->Name("gemm")->ArgNames({"m", "n", "k"})
    ->Args({128, 2304, 768})->Args({128, 768, 768})->Args({128, 4096, 768})->Args({128, 768, 2048})
    ->Args({128, 32000, 768})->Args({256, 4096, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();

BENCHMARK_MAIN();
