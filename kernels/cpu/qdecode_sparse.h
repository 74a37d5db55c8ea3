// Decoders of the sparse panel layout (qlinear.h): per k-step a 32-bit mask of
// kept rows and the kept codes packed in order. Each decoder walks a cursor
// through its panel's codes (init: the panel's first code; seek(k0): past the
// codes of k-steps before k0) and expands the kept codes into their lanes:
// AVX-512 vexpandps / vpexpandd under the mask, AVX2 a permutation of the next
// 8 codes from a 256-entry table plus a lane mask, portable one lane at a time.
// Removed weights decode to +0, as the dense layout's zero codes do, so the
// kernels' results equal the dense ones bit for bit. Reads may run up to 64
// bytes past the last kept code (the packed buffer has that slack).
// Only included by kernels/cpu/qlinear.cpp.
#pragma once
#include <immintrin.h>

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/qdecode.h"

namespace condense::kernels::qdec {

// Lane i of mask byte b takes packed element perm[b][i] (the set bits below i).
struct ExpandTable {
  alignas(32) int32_t perm[256][8];
  ExpandTable() {
    for (int b = 0; b < 256; ++b) {
      int n = 0;
      for (int i = 0; i < 8; ++i) perm[b][i] = ((b >> i) & 1) ? n++ : 0;
    }
  }
};
inline const ExpandTable& expand_table() {
  static const ExpandTable t;
  return t;
}

// Shared cursor logic: the panel's masks and the next kept code.
template <class T>
struct SparseCursor {
  const uint32_t* m;
  const T* v;
  int64_t k_total;
  void init_cursor(const QMatrix& w, int64_t p) {
    k_total = w.layout.k;
    m = w.masks + p * k_total;
    v = reinterpret_cast<const T*>(w.codes) + w.panel_start[p];
  }
  void seek(int64_t k0) {
    for (int64_t c = 0; c < k0; ++c) v += std::popcount(m[c]);
  }
};

// ---------------------------------------------------------------- AVX-512 ---

struct SpF32x512 : SparseCursor<float> {
  static constexpr bool kScaleAtEnd = false;
  void init(const QMatrix& w, int64_t p) { init_cursor(w, p); }
  void group(const QMatrix&, int64_t, int64_t) {}
  CONDENSE_AVX512 void at(int64_t k, __m512& w0, __m512& w1) {
    const uint32_t mk = m[k];
    const __mmask16 lo = __mmask16(mk & 0xffff), hi = __mmask16(mk >> 16);
    // Register-form expands: the memory form is microcoded on Zen 4.
    w0 = _mm512_maskz_expand_ps(lo, _mm512_loadu_ps(v));
    v += std::popcount(unsigned(lo));
    w1 = _mm512_maskz_expand_ps(hi, _mm512_loadu_ps(v));
    v += std::popcount(unsigned(hi));
  }
};

template <bool Asym, bool Channel>
struct SpI8x512 : SparseCursor<uint8_t>, GroupScales512<Asym> {
  using GroupScales512<Asym>::s0, GroupScales512<Asym>::s1, GroupScales512<Asym>::z0, GroupScales512<Asym>::z1;
  static constexpr bool kScaleAtEnd = Channel;
  void init(const QMatrix& w, int64_t p) { init_cursor(w, p); }
  CONDENSE_AVX512 __m512 lane16(__mmask16 mk, __m512 s, __m512i z) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(v));
    v += std::popcount(unsigned(mk));
    __m512i i = _mm512_maskz_expand_epi32(mk, Asym ? _mm512_cvtepu8_epi32(a) : _mm512_cvtepi8_epi32(a));
    if constexpr (Asym) i = _mm512_maskz_sub_epi32(mk, i, z);  // removed lanes stay 0
    const __m512 f = _mm512_cvtepi32_ps(i);
    return Channel ? f : _mm512_mul_ps(f, s);
  }
  CONDENSE_AVX512 void at(int64_t k, __m512& w0, __m512& w1) {
    const uint32_t mk = m[k];
    w0 = lane16(__mmask16(mk & 0xffff), s0, z0);
    w1 = lane16(__mmask16(mk >> 16), s1, z1);
  }
};

// ------------------------------------------------------------------- AVX2 ---

CONDENSE_AVX2 inline __m256i lane_bits(unsigned b) {
  const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(int(b)), bit), bit);
}

struct SpF32x256 : SparseCursor<float> {
  static constexpr bool kScaleAtEnd = false;
  void init(const QMatrix& w, int64_t p) { init_cursor(w, p); }
  void group(const QMatrix&, int64_t, int64_t) {}
  CONDENSE_AVX2 void at(int64_t k, __m256* wv) {
    const uint32_t mk = m[k];
    const ExpandTable& t = expand_table();
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const unsigned b = (mk >> (8 * q)) & 0xff;
      const __m256 x = _mm256_permutevar8x32_ps(_mm256_loadu_ps(v), _mm256_load_si256(reinterpret_cast<const __m256i*>(t.perm[b])));
      wv[q] = _mm256_and_ps(x, _mm256_castsi256_ps(lane_bits(b)));
      v += std::popcount(b);
    }
  }
};

template <bool Asym, bool Channel>
struct SpI8x256 : SparseCursor<uint8_t> {
  static constexpr bool kScaleAtEnd = Channel;
  ScaleZero256 sz;
  void init(const QMatrix& w, int64_t p) { init_cursor(w, p); }
  CONDENSE_AVX2 void group(const QMatrix& w, int64_t p, int64_t g) { sz.load_avx2(w, p, g, Asym, 1.f); }
  CONDENSE_AVX2 void at(int64_t k, __m256* wv) {
    const uint32_t mk = m[k];
    const ExpandTable& t = expand_table();
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const unsigned b = (mk >> (8 * q)) & 0xff;
      const __m128i a = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(v));
      v += std::popcount(b);
      const __m256i lanes = lane_bits(b);
      __m256i i = _mm256_permutevar8x32_epi32(Asym ? _mm256_cvtepu8_epi32(a) : _mm256_cvtepi8_epi32(a),
                                              _mm256_load_si256(reinterpret_cast<const __m256i*>(t.perm[b])));
      if constexpr (Asym) i = _mm256_sub_epi32(i, _mm256_load_si256(reinterpret_cast<const __m256i*>(sz.z + 8 * q)));
      i = _mm256_and_si256(i, lanes);
      wv[q] = _mm256_cvtepi32_ps(i);
      if constexpr (!Channel) wv[q] = _mm256_mul_ps(wv[q], _mm256_load_ps(sz.s + 8 * q));
    }
  }
};

// --------------------------------------------------------------- portable ---

template <WCode Code, bool Asym, bool Channel>
struct SpxP : SparseCursor<uint8_t> {
  static constexpr bool kScaleAtEnd = Channel;
  ScaleZero256 sz;
  void init(const QMatrix& w, int64_t p) {
    k_total = w.layout.k;
    m = w.masks + p * k_total;
    v = w.codes + w.panel_start[p] * (Code == WCode::F32 ? 4 : 1);
  }
  void group(const QMatrix& w, int64_t p, int64_t g) {
    if constexpr (Code != WCode::F32) sz.load(w, p, g, Asym, 1.f);
  }
  void seek(int64_t k0) {
    for (int64_t c = 0; c < k0; ++c) v += std::popcount(m[c]) * (Code == WCode::F32 ? 4 : 1);
  }
  void at(int64_t k, float* wv) {
    const uint32_t mk = m[k];
    for (int j = 0; j < 32; ++j) {
      if (!((mk >> j) & 1)) {
        wv[j] = 0.f;
        continue;
      }
      if constexpr (Code == WCode::F32) {
        std::memcpy(&wv[j], v, 4);
        v += 4;
      } else {
        const int q = Asym ? int(*v) - sz.z[j] : int(int8_t(*v));
        ++v;
        wv[j] = Channel ? float(q) : sz.s[j] * float(q);
      }
    }
  }
};

}  // namespace condense::kernels::qdec
