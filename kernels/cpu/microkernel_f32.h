// The f32 AVX-512 micro-kernel that every GEMM-shaped kernel here shares:
// c[0:MR, 0:32] (+)= a[k][MR] (packed, broadcast) x b[k][32] (packed panel).
// 2*MR zmm accumulators + 2 panel vectors + 1 broadcast fit the 32 registers
// for MR <= 12. Only included by kernels/cpu/*.cpp; callers must check
// active_isa() == Isa::Avx512 before calling.
#pragma once
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <utility>

namespace condense::kernels {

inline constexpr int kMicroRows = 12;     // MR
inline constexpr int kMicroCols = 32;     // the panel width, two zmm vectors
inline constexpr int64_t kMicroDepth = 256;  // KC: a 256 x 32 panel slice (32 KB) stays in L1

#define CONDENSE_AVX512 __attribute__((target("avx512f,fma")))

CONDENSE_AVX512 inline __mmask16 lane_mask(int valid) {
  return valid >= 16 ? __mmask16(0xffff) : (valid <= 0 ? __mmask16(0) : __mmask16((1u << valid) - 1));
}

template <int MR>
CONDENSE_AVX512 inline void micro_avx512(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int valid,
                                  bool accumulate) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(b + p * kMicroCols);
    const __m512 b1 = _mm512_load_ps(b + p * kMicroCols + 16);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[p * MR + i]);
      c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
    }
  }
  const __mmask16 m0 = lane_mask(valid), m1 = lane_mask(valid - 16);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    if (accumulate) {
      c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, ci));
      c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, ci + 16));
    }
    _mm512_mask_storeu_ps(ci, m0, c0[i]);
    _mm512_mask_storeu_ps(ci + 16, m1, c1[i]);
  }
}

using MicroFn = void (*)(int64_t, const float*, const float*, float*, int64_t, int, bool);
template <int... I>
constexpr auto make_micro_table(std::integer_sequence<int, I...>) {
  return std::array<MicroFn, sizeof...(I)>{&micro_avx512<I + 1>...};
}
inline constexpr auto kMicro = make_micro_table(std::make_integer_sequence<int, kMicroRows>{});


}  // namespace condense::kernels
