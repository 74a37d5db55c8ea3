// This machine's physical limits, measured: memory read bandwidth (the bound
// for decode: one pass over a 1 GiB array, far beyond the 32 MB L3, with AVX-512
// loads; bytes_per_second, in GiB/s as Google Benchmark prints it) and peak f32
// FMA throughput (the bound for prefill; GFLOPS), 1 thread and 2 threads.
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

namespace {

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

// Horizontal sum through memory: GCC 12's _mm512_reduce_add_ps trips
// -Wuninitialized inside its own header.
__attribute__((target("avx512f"))) float hsum(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float s = 0;
  for (float x : lanes) s += x;
  return s;
}

// prefetch_distance: floats ahead to software-prefetch (0 = rely on the hardware prefetcher).
template <int prefetch_distance>
__attribute__((target("avx512f"))) float sum_range(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 64) {
    if constexpr (prefetch_distance > 0) {
      _mm_prefetch(reinterpret_cast<const char*>(p + i + prefetch_distance), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(p + i + prefetch_distance + 16), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(p + i + prefetch_distance + 32), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(p + i + prefetch_distance + 48), _MM_HINT_T0);
    }
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  return hsum(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

template <int prefetch_distance>
void BM_ReadBandwidth(benchmark::State& state) {
  const int threads = int(state.range(0));
  float* p = buffer();
  const size_t n = kBytes / 4;
  for (auto _ : state) {
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const size_t chunk = n / size_t(nt) / 64 * 64;
      total += sum_range<prefetch_distance>(p + chunk * size_t(t), t == nt - 1 ? n - chunk * size_t(t) : chunk);
    }
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kBytes));
  state.counters["threads"] = threads;
}
// The bound used for decode is the best of these (hardware prefetch alone, or with
// software prefetch 2 KB / 4 KB ahead). One sequential stream per thread is
// fastest on Zen 4 here; interleaving 2-8 streams measured 40-60% slower.
BENCHMARK(BM_ReadBandwidth<0>)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_ReadBandwidth<512>)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_ReadBandwidth<1024>)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

// 12 independent FMA chains (latency 4 x 2 pipes needs >= 8) on registers only.
__attribute__((target("avx512f,fma"))) float fma_loop(int64_t iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(float(i) * 1e-3f);
  const __m512 m = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, b);
  }
  __m512 t = a[0];
  for (int i = 1; i < 12; ++i) t = _mm512_add_ps(t, a[i]);
  return hsum(t);
}

void BM_FmaPeak(benchmark::State& state) {
  const int threads = int(state.range(0));
  const int64_t iters = 1 << 24;
  for (auto _ : state) {
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    total += fma_loop(iters);
    benchmark::DoNotOptimize(total);
  }
  state.counters["GFLOPS"] = benchmark::Counter(double(state.iterations()) * threads * double(iters) * 12 * 16 * 2,
                                                benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_FmaPeak)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
