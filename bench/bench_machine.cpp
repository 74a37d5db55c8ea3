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

template <class V, int W>
float hsum(V v) {
  alignas(64) float lanes[W];
  std::memcpy(lanes, &v, sizeof(v));
  float s = 0;
  for (float x : lanes) s += x;
  return s;
}

#define AVX512 __attribute__((target("avx512f,avx512bw,fma")))
#define AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vnni,fma")))
#define AVX2 __attribute__((target("avx2,fma")))
typedef float v4f __attribute__((vector_size(16)));

// ---------------------------------------------------------- read bandwidth ---
// prefetch: floats ahead to software-prefetch (0 = the hardware prefetcher alone).

AVX512 float sum_avx512(const float* p, size_t n, size_t prefetch) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 64) {
    if (prefetch) {
      for (int l = 0; l < 64; l += 16) _mm_prefetch(reinterpret_cast<const char*>(p + i + prefetch + l), _MM_HINT_T0);
    }
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  return hsum<__m512, 16>(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

AVX2 float sum_avx2(const float* p, size_t n, size_t prefetch) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 64) {
    if (prefetch) {
      for (int l = 0; l < 64; l += 16) _mm_prefetch(reinterpret_cast<const char*>(p + i + prefetch + l), _MM_HINT_T0);
    }
    for (int l = 0; l < 64; l += 32) {
      a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i + l));
      a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + l + 8));
      a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + l + 16));
      a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + l + 24));
    }
  }
  return hsum<__m256, 8>(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

float sum_portable(const float* p, size_t n, size_t prefetch) {
  v4f a[4] = {};
  for (size_t i = 0; i < n; i += 64) {
    if (prefetch) {
      for (int l = 0; l < 64; l += 16) __builtin_prefetch(p + i + prefetch + l);
    }
    for (int l = 0; l < 64; l += 16) {
      for (int j = 0; j < 4; ++j) {
        v4f v;
        std::memcpy(&v, p + i + l + 4 * j, sizeof(v));
        a[j] += v;
      }
    }
  }
  return hsum<v4f, 4>(a[0] + a[1] + a[2] + a[3]);
}

void BM_ReadBandwidth(benchmark::State& state, Isa isa, size_t prefetch) {
  const int threads = int(state.range(0));
  float* p = buffer();
  const size_t n = kBytes / 4;
  auto sum = isa == Isa::Avx512 ? sum_avx512 : isa == Isa::Avx2 ? sum_avx2 : sum_portable;
  for (auto _ : state) {
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const size_t chunk = n / size_t(nt) / 64 * 64;
      total += sum(p + chunk * size_t(t), t == nt - 1 ? n - chunk * size_t(t) : chunk, prefetch);
    }
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kBytes));
  state.counters["threads"] = threads;
  state.SetLabel(kc::isa_name(isa));
}

// -------------------------------------------------------------- FMA peak ---
// 12 independent chains (FMA latency 4-5 x 2 pipes needs >= 10) on registers only.

AVX512 double fma_avx512(int64_t iters) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(float(i) * 1e-3f);
  const __m512 m = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, b);
  }
  __m512 t = a[0];
  for (int i = 1; i < 12; ++i) t = _mm512_add_ps(t, a[i]);
  benchmark::DoNotOptimize(t);
  return double(iters) * 12 * 16 * 2;
}

AVX2 double fma_avx2(int64_t iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(float(i) * 1e-3f);
  const __m256 m = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, b);
  }
  __m256 t = a[0];
  for (int i = 1; i < 12; ++i) t = _mm256_add_ps(t, a[i]);
  benchmark::DoNotOptimize(t);
  return double(iters) * 12 * 8 * 2;
}

// The portable kernels' arithmetic: 4-wide multiply then add (no FMA).
double fma_portable(int64_t iters) {
  v4f a[12];
  for (int i = 0; i < 12; ++i) a[i] = v4f{1, 1, 1, 1} * (float(i) * 1e-3f);
  const v4f m = {0.999999f, 0.999999f, 0.999999f, 0.999999f}, b = {1e-7f, 1e-7f, 1e-7f, 1e-7f};
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = a[i] * m + b;
  }
  v4f t = a[0];
  for (int i = 1; i < 12; ++i) t += a[i];
  benchmark::DoNotOptimize(t);
  return double(iters) * 12 * 4 * 2;
}

void BM_FmaPeak(benchmark::State& state, Isa isa) {
  const int threads = int(state.range(0));
  const int64_t iters = 1 << 24;
  auto body = isa == Isa::Avx512 ? fma_avx512 : isa == Isa::Avx2 ? fma_avx2 : fma_portable;
  double flops = 0;
  for (auto _ : state) {
#pragma omp parallel num_threads(threads) reduction(+ : flops)
    flops += body(iters);
  }
  state.counters["GFLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(kc::isa_name(isa));
}

// ------------------------------------------------------------- int8 peak ---
// u8 x s8 products summed into s32, 8 independent accumulators; the sequence an
// int8 GEMV uses. maddubs: 2 instructions + an add per vector of products.

AVX2 double int8_avx2(int64_t iters) {
  __m256i acc[8];
  for (int i = 0; i < 8; ++i) acc[i] = _mm256_set1_epi32(i);
  const __m256i u = _mm256_set1_epi8(3), s = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones));
      __asm__ volatile("" : "+x"(acc[i]));  // keep the products from being hoisted out of the loop
    }
  }
  benchmark::DoNotOptimize(acc);
  return double(iters) * 8 * 32 * 2;
}

AVX512 double int8_avx512bw(int64_t iters) {
  __m512i acc[8];
  for (int i = 0; i < 8; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2), ones = _mm512_set1_epi16(1);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      acc[i] = _mm512_add_epi32(acc[i], _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), ones));
      __asm__ volatile("" : "+v"(acc[i]));
    }
  }
  benchmark::DoNotOptimize(acc);
  return double(iters) * 8 * 64 * 2;
}

AVX512VNNI double int8_vnni(int64_t iters) {
  __m512i acc[8];
  for (int i = 0; i < 8; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], u, s);
  }
  benchmark::DoNotOptimize(acc);
  return double(iters) * 8 * 64 * 2;
}

void BM_Int8Peak(benchmark::State& state, double (*body)(int64_t), const char* label) {
  const int threads = int(state.range(0));
  const int64_t iters = 1 << 22;
  double ops = 0;
  for (auto _ : state) {
#pragma omp parallel num_threads(threads) reduction(+ : ops)
    ops += body(iters);
  }
  state.counters["GOPS"] = benchmark::Counter(ops, benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(label);
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
  auto int8 = [](const char* name, double (*body)(int64_t)) {
    benchmark::RegisterBenchmark((std::string("BM_Int8Peak/") + name).c_str(), BM_Int8Peak, body, name)
        ->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
  };
  if (kc::isa_supported(Isa::Avx2)) int8("avx2_maddubs", int8_avx2);
  if (kc::isa_supported(Isa::Avx512) && __builtin_cpu_supports("avx512bw")) int8("avx512_maddubs", int8_avx512bw);
  if (kc::isa_supported(Isa::Avx512) && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni")) {
    int8("avx512_vnni", int8_vnni);
  }
  benchmark::AddCustomContext("cpu_name", kc::cpu_name());
  benchmark::AddCustomContext("isas", isas);
  benchmark::AddCustomContext("best_isa", kc::isa_name(kc::best_isa()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
