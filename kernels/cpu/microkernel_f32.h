// The f32 micro-kernels that every GEMM-shaped kernel here shares, one body per
// ISA behind one table: c[0:mr, 0:valid] (+)= sum_p a[p][mr] x b[p][32], with A
// packed per MR-row block as [kc][mr] (broadcast order) and B a 32-wide panel
// slice [kc][32] (64-byte aligned, zero-padded). The blocking around them (MR,
// the 32-wide panel, KC) is the same on every ISA; only the register tiling
// differs:
//   AVX-512: mr x 32 in 2*mr zmm (mr <= 12 fits the 32 registers);
//   AVX2:    6 x 16 sub-tiles in 12 ymm (the 16-register file), 4 per block;
//   portable: 4 x 8 sub-tiles of GCC vector-extension floats (SSE2, NEON, ...).
// AVX-512 and AVX2 accumulate each c element in the same order with FMA, so they
// agree bit for bit; the portable body multiplies and adds separately.
// Only included by kernels/cpu/*.cpp.
#pragma once
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/simd.h"

namespace condense::kernels {

inline constexpr int kMicroRows = 12;     // MR
inline constexpr int kMicroCols = 32;     // the panel width
inline constexpr int64_t kMicroDepth = 256;  // KC: a 256 x 32 panel slice (32 KB) stays in L1

using MicroFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int valid, bool accumulate);

// ---------------------------------------------------------------- AVX-512 ---

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

// ------------------------------------------------------------------- AVX2 ---

// R rows (of an A block packed with stride mr) x 16 columns (of the 32-wide panel).
template <int R>
CONDENSE_AVX2 inline void sub_avx2(int64_t kc, const float* a, int mr, const float* b, float* c, int64_t ldc, int valid,
                                   bool accumulate) {
  __m256 c0[R], c1[R];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) c0[i] = c1[i] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(b + p * kMicroCols);
    const __m256 b1 = _mm256_load_ps(b + p * kMicroCols + 8);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + p * mr + i);
      c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
    }
  }
  if (valid >= 16) {
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      float* ci = c + i * ldc;
      if (accumulate) {
        c0[i] = _mm256_add_ps(c0[i], _mm256_loadu_ps(ci));
        c1[i] = _mm256_add_ps(c1[i], _mm256_loadu_ps(ci + 8));
      }
      _mm256_storeu_ps(ci, c0[i]);
      _mm256_storeu_ps(ci + 8, c1[i]);
    }
    return;
  }
  // Every loop over the accumulators is fully unrolled: one indexed access would
  // make GCC keep the whole array on the stack, spilling it at each k step.
  const __m256i m0 = lane_mask8(valid), m1 = lane_mask8(valid - 8);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    float* ci = c + i * ldc;
    if (accumulate) {
      c0[i] = _mm256_add_ps(c0[i], _mm256_maskload_ps(ci, m0));
      c1[i] = _mm256_add_ps(c1[i], _mm256_maskload_ps(ci + 8, m1));
    }
    _mm256_maskstore_ps(ci, m0, c0[i]);
    _mm256_maskstore_ps(ci + 8, m1, c1[i]);
  }
}

template <int MR>
CONDENSE_AVX2 inline void micro_avx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int valid,
                                     bool accumulate) {
  constexpr int top = MR < 6 ? MR : 6, bottom = MR - top;
  // Row group outermost (measured 5-10% faster at training shapes than column
  // half outermost): a group's 6 x kc A slice stays in L1 across both halves.
  for (int h = 0; h < 2 && valid > 16 * h; ++h) sub_avx2<top>(kc, a, MR, b + 16 * h, c + 16 * h, ldc, valid - 16 * h, accumulate);
  if constexpr (bottom > 0) {
    for (int h = 0; h < 2 && valid > 16 * h; ++h) {
      sub_avx2<bottom>(kc, a + top, MR, b + 16 * h, c + top * ldc + 16 * h, ldc, valid - 16 * h, accumulate);
    }
  }
}

// --------------------------------------------------------------- portable ---

// R rows x 8 columns; mul then add (no FMA contraction in ISO C++ mode).
template <int R>
inline void sub_portable(int64_t kc, const float* a, int mr, const float* b, float* c, int64_t ldc, int valid,
                         bool accumulate) {
  vec4f c0[R], c1[R];
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i) c0[i] = c1[i] = vec4f{0, 0, 0, 0};
  for (int64_t p = 0; p < kc; ++p) {
    const vec4f b0 = load4(b + p * kMicroCols), b1 = load4(b + p * kMicroCols + 4);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const float av = a[p * mr + i];
      c0[i] += av * b0;
      c1[i] += av * b1;
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < R; ++i) {
    float out[8];
    std::memcpy(out, &c0[i], sizeof(c0[i]));
    std::memcpy(out + 4, &c1[i], sizeof(c1[i]));
    float* ci = c + i * ldc;
    const int n = valid < 8 ? valid : 8;
    for (int j = 0; j < n; ++j) ci[j] = accumulate ? out[j] + ci[j] : out[j];
  }
}

template <int MR>
inline void micro_portable(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int valid, bool accumulate) {
  for (int q = 0; q < 4 && valid > 8 * q; ++q) {
    const int v = valid - 8 * q;
    sub_portable<MR < 4 ? MR : 4>(kc, a, MR, b + 8 * q, c + 8 * q, ldc, v, accumulate);
    if constexpr (MR > 4) sub_portable<(MR < 8 ? MR : 8) - 4>(kc, a + 4, MR, b + 8 * q, c + 4 * ldc + 8 * q, ldc, v, accumulate);
    if constexpr (MR > 8) sub_portable<MR - 8>(kc, a + 8, MR, b + 8 * q, c + 8 * ldc + 8 * q, ldc, v, accumulate);
  }
}

// ------------------------------------------------------------- the table ---

using MicroTable = std::array<MicroFn, kMicroRows>;  // entry mr - 1 handles an mr-row block

template <int... I>
constexpr MicroTable make_micro_table(Isa isa, std::integer_sequence<int, I...>) {
  if (isa == Isa::Avx512) return MicroTable{&micro_avx512<I + 1>...};
  if (isa == Isa::Avx2) return MicroTable{&micro_avx2<I + 1>...};
  return MicroTable{&micro_portable<I + 1>...};
}
inline constexpr MicroTable kMicroAvx512 = make_micro_table(Isa::Avx512, std::make_integer_sequence<int, kMicroRows>{});
inline constexpr MicroTable kMicroAvx2 = make_micro_table(Isa::Avx2, std::make_integer_sequence<int, kMicroRows>{});
inline constexpr MicroTable kMicroPortable = make_micro_table(Isa::Portable, std::make_integer_sequence<int, kMicroRows>{});

inline const MicroTable& micro_table(Isa isa) {
  return isa == Isa::Avx512 ? kMicroAvx512 : isa == Isa::Avx2 ? kMicroAvx2 : kMicroPortable;
}

}  // namespace condense::kernels
