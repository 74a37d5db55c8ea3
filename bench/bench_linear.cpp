// The packed f32 linear kernels at the shapes of stories110M and TinyLlama:
// decode GEMV (m = 1, memory-bound: compare bytes_per_second with bench_membw)
// and prefill GEMM (m = 128, compute-bound: compare GFLOPS with this machine's
// f32 FMA peak, ~117 GFLOP/s per thread per ../shared/MACHINE.md).
// ISA: CONDENSE_ISA (avx512, avx2, portable; default the best). Threads: OMP_NUM_THREADS; report 1 thread as the headline (the machine is shared).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "core/ops/linear.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm_f32.h"

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

// Training products of a linear layer W [out, in] over T tokens (kernels::gemm_f32):
// mode 0 forward Y = X W^T, 1 input grad dX = dY W, 2 weight grad dW = dY^T X.
void run_train_gemm(benchmark::State& state) {
  const int64_t t = state.range(0), out = state.range(1), in = state.range(2), mode = state.range(3);
  std::mt19937 g(2);
  std::normal_distribution<float> d;
  std::vector<float> x(size_t(t * in)), w(size_t(out * in)), dy(size_t(t * out)), res(size_t(std::max(t * std::max(in, out), out * in)));
  for (auto* v : {&x, &w, &dy}) for (auto& e : *v) e = d(g);
  for (auto _ : state) {
    if (mode == 0) kernels::gemm_f32(t, out, in, 1.f, x.data(), in, 1, w.data(), 1, in, 0.f, res.data(), out);
    if (mode == 1) kernels::gemm_f32(t, in, out, 1.f, dy.data(), out, 1, w.data(), in, 1, 0.f, res.data(), in);
    if (mode == 2) kernels::gemm_f32(out, in, t, 1.f, dy.data(), 1, out, x.data(), in, 1, 0.f, res.data(), in);
    benchmark::DoNotOptimize(res.data());
  }
  state.counters["GFLOPS"] = benchmark::Counter(double(state.iterations()) * 2.0 * double(t * out * in), benchmark::Counter::kIsRate,
                                                benchmark::Counter::kIs1000);
}

}  // namespace

// stories15M training at batch 8 x 256 tokens: FFN up (768 x 288), down (288 x 768), head (32000 x 288).
BENCHMARK(run_train_gemm)->Name("train_gemm")->ArgNames({"t", "out", "in", "mode"})
    ->ArgsProduct({{2048}, {768}, {288}, {0, 1, 2}})->Args({2048, 288, 768, 0})->Args({2048, 288, 768, 1})->Args({2048, 288, 768, 2})
    ->ArgsProduct({{2048}, {32000}, {288}, {0, 1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
// stories15M attention blocks (head dim 48, 64 query rows against 256 keys): scores
// S = Q K^T (k = 48) and O = P V (n = 48), as attention_f32 calls gemm_f32.
BENCHMARK(run_train_gemm)->Name("attn_gemm")->ArgNames({"t", "out", "in", "mode"})
    ->Args({64, 256, 48, 0})->Args({64, 48, 256, 0})->Unit(benchmark::kMicrosecond)->UseRealTime();

// stories110M: fused qkv 2304x768, o 768x768, fused gate/up 4096x768, down 768x2048, head 32000x768
BENCHMARK(run_linear)->Name("gemv")->ArgNames({"m", "n", "k"})
    ->Args({1, 2304, 768})->Args({1, 4096, 768})->Args({1, 768, 2048})->Args({1, 32000, 768})
    ->Args({1, 11264, 2048})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(run_linear)->Name("gemm")->ArgNames({"m", "n", "k"})
    ->Args({128, 2304, 768})->Args({128, 768, 768})->Args({128, 4096, 768})->Args({128, 768, 2048})
    ->Args({128, 32000, 768})->Args({256, 4096, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  // CONDENSE_ISA chooses the kernels' path; the JSON context says which ran.
  benchmark::AddCustomContext("isa", kernels::isa_name(kernels::active_isa()));
  benchmark::AddCustomContext("cpu_name", kernels::cpu_name());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
