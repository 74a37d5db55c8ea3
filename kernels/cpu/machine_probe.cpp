// The probe bodies: one per ISA, registers and a 1-D stream only.
#include "kernels/cpu/machine_probe.h"

#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace condense::kernels::probe {
namespace {

// Keeps a computed value alive without a library.
template <class T>
void sink(T* p) {
  __asm__ volatile("" : : "r"(p) : "memory");
}

#define AVX512 __attribute__((target("avx512f,avx512bw,fma")))
#define AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vnni,fma")))
#define AVX2 __attribute__((target("avx2,fma")))
typedef float v4f __attribute__((vector_size(16)));

template <class V, int W>
float hsum(const V& v) {  // by reference: a vector argument by value needs the caller's ISA in clang
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
  sink(&t);
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
  sink(&t);
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
  sink(&t);
  return double(iters) * 12 * 4 * 2;
}

// Ops (2 per multiply-add) of `iters` rounds of 8 accumulator chains acc = op(acc),
// each op `macs` multiply-adds. Barrier: an empty asm after each op keeps the
// products of constants (maddubs) in the loop; one-instruction ops (VNNI) need
// none, and with it Zen 4 measured half their rate.
template <class Op>
AVX2 double chains_avx2(int64_t iters, Op op, int macs) {  // always with the barrier
  __m256i acc[8];
  for (int i = 0; i < 8; ++i) acc[i] = _mm256_set1_epi32(i);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      acc[i] = op(acc[i]);
      __asm__ volatile("" : "+x"(acc[i]));
    }
  }
  sink(acc);
  return double(iters) * 8 * macs * 2;
}
template <bool Barrier, class Op>
AVX512VNNI double chains_avx512(int64_t iters, Op op, int macs) {
  __m512i acc[8];
  for (int i = 0; i < 8; ++i) acc[i] = _mm512_set1_epi32(i);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      acc[i] = op(acc[i]);
      if constexpr (Barrier) __asm__ volatile("" : "+v"(acc[i]));
    }
  }
  sink(acc);
  return double(iters) * 8 * macs * 2;
}

AVX2 double int8_avx2(int64_t iters) {
  const __m256i u = _mm256_set1_epi8(3), s = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  return chains_avx2(iters, [&](__m256i a) AVX2 { return _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones)); }, 32);
}

AVX512 double int8_avx512bw(int64_t iters) {
  const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2), ones = _mm512_set1_epi16(1);
  return chains_avx512<true>(iters, [&](__m512i a) AVX512 { return _mm512_add_epi32(a, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), ones)); }, 64);
}

AVX512VNNI double int8_vnni(int64_t iters) {
  const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
  return chains_avx512<false>(iters, [&](__m512i a) AVX512VNNI { return _mm512_dpbusd_epi32(a, u, s); }, 64);
}

// The a16 kernels' int16 products (AVX2 int8: vpmaddwd + vpaddd; VNNI vpdpwssd
// stands for the two-digit vpdpbusd pair: the same 32 multiply-adds per op).
AVX2 double int16_avx2(int64_t iters) {
  const __m256i u = _mm256_set1_epi16(3), s = _mm256_set1_epi16(-2);
  return chains_avx2(iters, [&](__m256i a) AVX2 { return _mm256_add_epi32(a, _mm256_madd_epi16(u, s)); }, 16);
}

AVX512VNNI double int16_vnni(int64_t iters) {
  const __m512i u = _mm512_set1_epi16(3), s = _mm512_set1_epi16(-2);
  return chains_avx512<false>(iters, [&](__m512i a) AVX512VNNI { return _mm512_dpwssd_epi32(a, u, s); }, 32);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

float read_sum(Isa isa, const float* p, size_t n, size_t prefetch) {
  return isa == Isa::Avx512 ? sum_avx512(p, n, prefetch) : isa == Isa::Avx2 ? sum_avx2(p, n, prefetch) : sum_portable(p, n, prefetch);
}

double fma_chains(Isa isa, int64_t iters) {
  return isa == Isa::Avx512 ? fma_avx512(iters) : isa == Isa::Avx2 ? fma_avx2(iters) : fma_portable(iters);
}

bool int8_dot_supported(Int8Dot d) {
  switch (d) {
    case Int8Dot::Avx2Maddubs: return isa_supported(Isa::Avx2);
    case Int8Dot::Avx512Maddubs: return isa_supported(Isa::Avx512) && __builtin_cpu_supports("avx512bw");
    case Int8Dot::Avx512Vnni: return avx512_vnni_supported();
  }
  return false;
}

const char* int8_dot_name(Int8Dot d) {
  switch (d) {
    case Int8Dot::Avx2Maddubs: return "avx2_maddubs";
    case Int8Dot::Avx512Maddubs: return "avx512_maddubs";
    case Int8Dot::Avx512Vnni: return "avx512_vnni";
  }
  return "?";
}

double int8_dots(Int8Dot d, int64_t iters) {
  switch (d) {
    case Int8Dot::Avx2Maddubs: return int8_avx2(iters);
    case Int8Dot::Avx512Maddubs: return int8_avx512bw(iters);
    case Int8Dot::Avx512Vnni: return int8_vnni(iters);
  }
  return 0;
}

bool int8_dot_for(Isa isa, Int8Dot* out) {
  if (isa == Isa::Avx512 && avx512_vnni_supported()) *out = Int8Dot::Avx512Vnni;
  else if (isa == Isa::Avx512 || isa == Isa::Avx2) *out = Int8Dot::Avx2Maddubs;  // the integer kernels' AVX2 body
  else return false;
  return true;
}

Limits measure(int threads, size_t read_bytes, int passes) {
  Limits L;
  L.threads = threads;
  const Isa isa = active_isa();
  const size_t n = std::max<size_t>(64, read_bytes / 4 / 64 * 64);
  auto* p = static_cast<float*>(std::aligned_alloc(size_t(2) << 20, (n * 4 + (size_t(2) << 20) - 1) / (size_t(2) << 20) * (size_t(2) << 20)));
  ::madvise(p, n * 4, MADV_HUGEPAGE);
  std::memset(p, 1, n * 4);
  for (size_t prefetch : {size_t(0), size_t(1024)}) {
    for (int r = 0; r < passes; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
      {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const size_t chunk = n / size_t(nt) / 64 * 64;
        total += read_sum(isa, p + chunk * size_t(t), t == nt - 1 ? n - chunk * size_t(t) : chunk, prefetch);
      }
      sink(&total);
      L.read_gbs = std::max(L.read_gbs, double(n) * 4 / seconds_since(t0) / 1e9);
    }
  }
  std::free(p);
  auto rate = [&](auto&& body, int64_t iters) {
    double best = 0;
    for (int r = 0; r < 3; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      double ops = 0;
#pragma omp parallel num_threads(threads) reduction(+ : ops)
      ops += body(iters);
      best = std::max(best, ops / seconds_since(t0) / 1e9);
    }
    return best;
  };
  L.fma_gflops = rate([&](int64_t it) { return fma_chains(isa, it); }, int64_t(1) << 21);
  Int8Dot d;
  if (int8_dot_for(isa, &d)) {
    L.int8_kind = int8_dot_name(d);
    L.int8_gops = rate([&](int64_t it) { return int8_dots(d, it); }, int64_t(1) << 20);
    const bool vnni = d == Int8Dot::Avx512Vnni;
    L.int16_kind = vnni ? "avx512_vnni_dpwssd" : "avx2_maddwd";
    L.int16_gops = rate([&](int64_t it) { return vnni ? int16_vnni(it) : int16_avx2(it); }, int64_t(1) << 20);
  }
  return L;
}

}  // namespace condense::kernels::probe
