// This machine's physical limits, measured for every ISA the CPU supports (and
// never with an instruction it lacks): memory read bandwidth (the bound for
// decode: one pass over a 1 GiB array, far beyond the L3; bytes_per_second, in
// GiB/s as Google Benchmark prints it), peak f32 FMA throughput (the bound for
// prefill and training; GFLOPS) and peak int8 dot-product throughput (GOPS, a
// multiply-add counted as 2 ops: vpmaddubsw + vpmaddwd on AVX2 and AVX-512BW,
// vpdpbusd with AVX-512 VNNI), at 1 and 2 threads. Names: BM_<what>/<isa>/<threads>.
// The JSON context records the CPU and the ISAs measured.
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/machine_probe.h"

namespace {

namespace kc = condense::kernels;
using kc::Isa;

constexpr size_t kBytes = size_t(1) << 30;

float* buffer() {
  static float* p = [] {
    // Huge pages, as the engine's weight tensors get (src/core/tensor.cpp): with
    // 4 KiB pages the same loop reads ~10% slower here.
    auto* q = static_cast<float*>(std::aligned_alloc(size_t(2) << 20, kBytes));
    ::madvise(q, kBytes, MADV_HUGEPAGE);
    std::memset(q, 1, kBytes);
    return q;
  }();
  return p;
}

void BM_ReadBandwidth(benchmark::State& state, Isa isa, size_t prefetch) {
  const int threads = int(state.range(0));
  float* p = buffer();
  const size_t n = kBytes / 4;
  for (auto _ : state) {
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const size_t chunk = n / size_t(nt) / 64 * 64;
      total += kc::probe::read_sum(isa, p + chunk * size_t(t), t == nt - 1 ? n - chunk * size_t(t) : chunk, prefetch);
    }
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kBytes));
  state.counters["threads"] = threads;
  state.SetLabel(kc::isa_name(isa));
}

// -------------------------------------------------------------- FMA peak ---
// 12 independent chains (FMA latency 4-5 x 2 pipes needs >= 10) on registers only.

void BM_FmaPeak(benchmark::State& state, Isa isa) {
  const int threads = int(state.range(0));
  const int64_t iters = 1 << 24;
  double flops = 0;
  for (auto _ : state) {
#pragma omp parallel num_threads(threads) reduction(+ : flops)
    flops += kc::probe::fma_chains(isa, iters);
  }
  state.counters["GFLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(kc::isa_name(isa));
}

// ------------------------------------------------------------- int8 peak ---
// u8 x s8 products summed into s32, 8 independent accumulators; the sequence an
// int8 GEMV uses. maddubs: 2 instructions + an add per vector of products.

void BM_Int8Peak(benchmark::State& state, kc::probe::Int8Dot dot) {
  const int threads = int(state.range(0));
  const int64_t iters = 1 << 22;
  double ops = 0;
  for (auto _ : state) {
#pragma omp parallel num_threads(threads) reduction(+ : ops)
    ops += kc::probe::int8_dots(dot, iters);
  }
  state.counters["GOPS"] = benchmark::Counter(ops, benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(kc::probe::int8_dot_name(dot));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::string isas;
  for (Isa isa : kc::kAllIsas) {
    if (!kc::isa_supported(isa)) continue;
    const std::string name = kc::isa_name(isa);
    isas += (isas.empty() ? "" : ",") + name;
    // The bound used for decode is the best of the read variants (hardware
    // prefetch alone, or software prefetch 4 KB ahead).
    for (size_t prefetch : {size_t(0), size_t(1024)}) {
      benchmark::RegisterBenchmark(("BM_ReadBandwidth/" + name + "/pf" + std::to_string(prefetch * 4)).c_str(),
                                   BM_ReadBandwidth, isa, prefetch)
          ->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
    }
    benchmark::RegisterBenchmark(("BM_FmaPeak/" + name).c_str(), BM_FmaPeak, isa)
        ->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  using kc::probe::Int8Dot;
  for (Int8Dot d : {Int8Dot::Avx2Maddubs, Int8Dot::Avx512Maddubs, Int8Dot::Avx512Vnni}) {
    if (!kc::probe::int8_dot_supported(d)) continue;
    benchmark::RegisterBenchmark((std::string("BM_Int8Peak/") + kc::probe::int8_dot_name(d)).c_str(), BM_Int8Peak, d)
        ->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  benchmark::AddCustomContext("cpu_name", kc::cpu_name());
  benchmark::AddCustomContext("isas", isas);
  benchmark::AddCustomContext("best_isa", kc::isa_name(kc::best_isa()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
