// Decoders of the panel layout (qlinear.h): each gives the 32 effective f32
// weights of one panel at one k-step, in registers, for one ISA (or, where
// kScaleAtEnd, the codes' values, the scale then multiplying the finished sum). The generic
// bodies in qlinear.cpp call init(w, panel) once, group(w, panel, g) when k
// enters scale group g, then at(k, ...) per k-step. Integer codes become f32
// exactly (cvt), then one multiply by the scale: fl(scale * q), the value
// model/quantized_weight.h defines. E4M3 is decoded (AVX-512, AVX2) by moving
// its bits into an f16 (sign to bit 15, exponent and mantissa to bits 13-7: a
// value 2^-8 times the E4M3 one, subnormals included) that vcvtph2ps widens,
// with 16-bit shifts on 256-bit registers (512-bit shifts and byte-to-dword
// widening held the old f32-bit-field decode to ~8 GB/s on Zen 4); 2^8 is
// folded into the scale, exact while scale < 2^8. Every fp8 weight stays
// fl(scale * value) (no scale on the finished sum, unlike per-channel int8):
// models with static fp8 activations re-round every linear's output, so the
// native run matches the simulated one only when the products are the same.
// No lookup table on any path. Only included by kernels/cpu/qlinear.cpp.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/common/minifloat.h"
#include "kernels/cpu/qlinear.h"
#include "kernels/cpu/simd.h"

namespace condense::kernels::qdec {

inline constexpr float kE4M3Shift = 0x1p8f;  // E4M3 value / value of its bits moved into an f16

inline int64_t scale_slot(const QLayout& L, int64_t p, int64_t g) { return L.per_tensor ? 0 : (p * L.groups() + g) * 32; }

// The 32 scales of a panel's group as f32 (per-tensor: the one scale, repeated).
inline void scales_f32(const QMatrix& w, int64_t p, int64_t g, float* s) {
  const QLayout& L = w.layout;
  const int64_t i = scale_slot(L, p, g), n = L.per_tensor ? 1 : 32;
  for (int64_t j = 0; j < n; ++j) {
    if (L.f16_scales) {
      uint16_t h;
      std::memcpy(&h, static_cast<const uint8_t*>(w.scales) + 2 * (i + j), 2);
      s[j] = minifloat::f16_finite_to_f32(h);
    } else {
      std::memcpy(&s[j], static_cast<const uint8_t*>(w.scales) + 4 * (i + j), 4);
    }
  }
  for (int64_t j = n; j < 32; ++j) s[j] = s[0];
}

// The 32 zero points of a panel's group as ints.
inline void zeros_i32(const QMatrix& w, int64_t p, int64_t g, int32_t* z) {
  const QLayout& L = w.layout;
  if (L.per_tensor) {
    for (int j = 0; j < 32; ++j) z[j] = w.zeros[0];
    return;
  }
  if (L.code == WCode::I4) {
    const uint8_t* b = w.zeros + (p * L.groups() + g) * 16;
    for (int j = 0; j < 32; ++j) z[j] = j < 16 ? (b[j] & 15) : (b[j - 16] >> 4);
  } else {
    const uint8_t* b = w.zeros + (p * L.groups() + g) * 32;
    for (int j = 0; j < 32; ++j) z[j] = b[j];
  }
}

// ---------------------------------------------------------------- AVX-512 ---

CONDENSE_AVX512 inline void scales512(const QMatrix& w, int64_t p, int64_t g, __m512& s0, __m512& s1) {
  const QLayout& L = w.layout;
  const int64_t i = scale_slot(L, p, g);
  if (L.f16_scales) {
    const auto* h = static_cast<const uint16_t*>(w.scales) + i;
    if (L.per_tensor) {
      s0 = s1 = _mm512_cvtph_ps(_mm256_set1_epi16(short(h[0])));
      return;
    }
    s0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h)));
    s1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + 16)));
  } else {
    const float* f = static_cast<const float*>(w.scales) + i;
    if (L.per_tensor) {
      s0 = s1 = _mm512_set1_ps(f[0]);
      return;
    }
    s0 = _mm512_loadu_ps(f);
    s1 = _mm512_loadu_ps(f + 16);
  }
}

CONDENSE_AVX512 inline void zeros512(const QMatrix& w, int64_t p, int64_t g, __m512i& z0, __m512i& z1) {
  alignas(64) int32_t z[32];
  zeros_i32(w, p, g, z);
  z0 = _mm512_load_si512(z);
  z1 = _mm512_load_si512(z + 16);
}

struct F32x512 {
  static constexpr bool kScaleAtEnd = false;
  const float* b;
  CONDENSE_AVX512 void init(const QMatrix& w, int64_t p) { b = reinterpret_cast<const float*>(w.codes) + p * w.layout.k * 32; }
  CONDENSE_AVX512 void group(const QMatrix&, int64_t, int64_t) {}
  CONDENSE_AVX512 void at(int64_t k, __m512& w0, __m512& w1) const {
    w0 = _mm512_load_ps(b + k * 32);
    w1 = _mm512_load_ps(b + k * 32 + 16);
  }
};

// A group's 32 scales (and zero points) in registers: the integer decoders' group().
template <bool Asym>
struct GroupScales512 {
  __m512 s0, s1;
  __m512i z0, z1;
  CONDENSE_AVX512 void group(const QMatrix& w, int64_t p, int64_t g) {
    scales512(w, p, g, s0, s1);
    if constexpr (Asym) zeros512(w, p, g, z0, z1);
  }
};

// Channel: one scale per row (or per tensor), applied to the finished sum
// instead of to each weight (ScaleAtEnd), which halves the float work per code.
template <bool Asym, bool Channel>
struct I8x512 : GroupScales512<Asym> {
  using GroupScales512<Asym>::s0, GroupScales512<Asym>::s1, GroupScales512<Asym>::z0, GroupScales512<Asym>::z1;
  static constexpr bool kScaleAtEnd = Channel;
  const uint8_t* c;
  CONDENSE_AVX512 void init(const QMatrix& w, int64_t p) { c = w.codes + p * w.layout.k * 32; }
  CONDENSE_AVX512 void at(int64_t k, __m512& w0, __m512& w1) const {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + k * 32));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + k * 32 + 16));
    __m512i i0, i1;
    if constexpr (Asym) {
      i0 = _mm512_sub_epi32(_mm512_cvtepu8_epi32(a), z0);
      i1 = _mm512_sub_epi32(_mm512_cvtepu8_epi32(b), z1);
    } else {
      i0 = _mm512_cvtepi8_epi32(a);
      i1 = _mm512_cvtepi8_epi32(b);
    }
    w0 = _mm512_cvtepi32_ps(i0);
    w1 = _mm512_cvtepi32_ps(i1);
    if constexpr (!Channel) {
      w0 = _mm512_mul_ps(w0, s0);
      w1 = _mm512_mul_ps(w1, s1);
    }
  }
};

template <bool Asym>
struct I4x512 : GroupScales512<Asym> {
  using GroupScales512<Asym>::s0, GroupScales512<Asym>::s1, GroupScales512<Asym>::z0, GroupScales512<Asym>::z1;
  static constexpr bool kScaleAtEnd = false;
  const uint8_t* c;
  CONDENSE_AVX512 void init(const QMatrix& w, int64_t p) { c = w.codes + p * w.layout.k * 16; }
  CONDENSE_AVX512 void at(int64_t k, __m512& w0, __m512& w1) const {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + k * 16));
    __m512i i0, i1;
    if constexpr (Asym) {
      const __m512i d = _mm512_cvtepu8_epi32(a);
      i0 = _mm512_sub_epi32(_mm512_and_si512(d, _mm512_set1_epi32(15)), z0);
      i1 = _mm512_sub_epi32(_mm512_srli_epi32(d, 4), z1);
    } else {
      const __m512i d = _mm512_cvtepi8_epi32(a);  // sign-extended: d >> 4 is the signed high nibble
      i0 = _mm512_srai_epi32(_mm512_slli_epi32(d, 28), 28);
      i1 = _mm512_srai_epi32(d, 4);
    }
    w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(i0), s0);
    w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(i1), s1);
  }
};

// 16 E4M3 bytes as the f32 values of the f16s holding their fields (2^-8 x):
// 16-bit lanes of a ymm (d << 7 keeps the sign, which sign extension copied
// into bit 8, at bit 15; the mask drops its copy at bit 14).
CONDENSE_AVX512 inline __m512 e4m3_f16_512(const uint8_t* c) {
  const __m256i d = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c)));
  return _mm512_cvtph_ps(_mm256_and_si256(_mm256_slli_epi16(d, 7), _mm256_set1_epi16(short(0xBF80))));
}

// Prescaled: every |scale| < 2^8, so 2^8 rides in the scale; otherwise each
// value is multiplied by 2^8 (exact) before the scale.
template <bool Prescaled>
struct E4M3x512 {
  static constexpr bool kScaleAtEnd = false;
  const uint8_t* c;
  __m512 s0, s1;
  CONDENSE_AVX512 void init(const QMatrix& w, int64_t p) { c = w.codes + p * w.layout.k * 32; }
  CONDENSE_AVX512 void group(const QMatrix& w, int64_t p, int64_t g) {
    scales512(w, p, g, s0, s1);
    if constexpr (Prescaled) {
      s0 = _mm512_mul_ps(s0, _mm512_set1_ps(kE4M3Shift));
      s1 = _mm512_mul_ps(s1, _mm512_set1_ps(kE4M3Shift));
    }
  }
  CONDENSE_AVX512 void at(int64_t k, __m512& w0, __m512& w1) const {
    __m512 f0 = e4m3_f16_512(c + k * 32), f1 = e4m3_f16_512(c + k * 32 + 16);
    if constexpr (!Prescaled) {
      f0 = _mm512_mul_ps(f0, _mm512_set1_ps(kE4M3Shift));
      f1 = _mm512_mul_ps(f1, _mm512_set1_ps(kE4M3Shift));
    }
    w0 = _mm512_mul_ps(f0, s0);
    w1 = _mm512_mul_ps(f1, s1);
  }
};

// ------------------------------------------------------------------- AVX2 ---
// Four ymm per k-step (rows 0-7, 8-15, 16-23, 24-31). Scales and zero points
// stay in memory (the 16-register file holds the accumulators of two panels);
// the multiplies read them as memory operands.

struct F32x256 {
  static constexpr bool kScaleAtEnd = false;
  const float* b;
  CONDENSE_AVX2 void init(const QMatrix& w, int64_t p) { b = reinterpret_cast<const float*>(w.codes) + p * w.layout.k * 32; }
  CONDENSE_AVX2 void group(const QMatrix&, int64_t, int64_t) {}
  CONDENSE_AVX2 void at(int64_t k, __m256* wv) const {
    for (int q = 0; q < 4; ++q) wv[q] = _mm256_load_ps(b + k * 32 + 8 * q);
  }
};

struct ScaleZero256 {
  alignas(32) float s[32];
  alignas(32) int32_t z[32];
  // Portable bodies: scalar conversion.
  void load(const QMatrix& w, int64_t p, int64_t g, bool asym, float factor) {
    scales_f32(w, p, g, s);
    finish(w, p, g, asym, factor);
  }
  // AVX2 bodies: f16 scales through F16C (a software conversion per scale made
  // the AVX2 int4 decode 3x slower).
  CONDENSE_AVX2 void load_avx2(const QMatrix& w, int64_t p, int64_t g, bool asym, float factor) {
    if (w.layout.f16_scales && !w.layout.per_tensor) {
      const auto* h = static_cast<const uint16_t*>(w.scales) + scale_slot(w.layout, p, g);
      for (int q = 0; q < 4; ++q) _mm256_store_ps(s + 8 * q, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + 8 * q))));
    } else {
      scales_f32(w, p, g, s);
    }
    finish(w, p, g, asym, factor);
  }
  void finish(const QMatrix& w, int64_t p, int64_t g, bool asym, float factor) {
    if (factor != 1.f) {
      for (float& v : s) v *= factor;
    }
    if (asym) zeros_i32(w, p, g, z);
  }
};

template <bool Asym, bool Channel>
struct I8x256 {
  static constexpr bool kScaleAtEnd = Channel;
  const uint8_t* c;
  ScaleZero256 sz;
  CONDENSE_AVX2 void init(const QMatrix& w, int64_t p) { c = w.codes + p * w.layout.k * 32; }
  CONDENSE_AVX2 void group(const QMatrix& w, int64_t p, int64_t g) { sz.load_avx2(w, p, g, Asym, 1.f); }
  CONDENSE_AVX2 void at(int64_t k, __m256* wv) const {
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const __m128i a = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + k * 32 + 8 * q));
      __m256i i;
      if constexpr (Asym) i = _mm256_sub_epi32(_mm256_cvtepu8_epi32(a), _mm256_load_si256(reinterpret_cast<const __m256i*>(sz.z + 8 * q)));
      else i = _mm256_cvtepi8_epi32(a);
      wv[q] = _mm256_cvtepi32_ps(i);
      if constexpr (!Channel) wv[q] = _mm256_mul_ps(wv[q], _mm256_load_ps(sz.s + 8 * q));
    }
  }
};

template <bool Asym>
struct I4x256 {
  static constexpr bool kScaleAtEnd = false;
  const uint8_t* c;
  ScaleZero256 sz;
  CONDENSE_AVX2 void init(const QMatrix& w, int64_t p) { c = w.codes + p * w.layout.k * 16; }
  CONDENSE_AVX2 void group(const QMatrix& w, int64_t p, int64_t g) { sz.load_avx2(w, p, g, Asym, 1.f); }
  CONDENSE_AVX2 void at(int64_t k, __m256* wv) const {
    const __m128i a = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + k * 16));
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + k * 16 + 8));
    __m256i i[4];
    if constexpr (Asym) {
      const __m256i da = _mm256_cvtepu8_epi32(a), db = _mm256_cvtepu8_epi32(b), m = _mm256_set1_epi32(15);
      i[0] = _mm256_and_si256(da, m);
      i[1] = _mm256_and_si256(db, m);
      i[2] = _mm256_srli_epi32(da, 4);
      i[3] = _mm256_srli_epi32(db, 4);
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) i[q] = _mm256_sub_epi32(i[q], _mm256_load_si256(reinterpret_cast<const __m256i*>(sz.z + 8 * q)));
    } else {
      const __m256i da = _mm256_cvtepi8_epi32(a), db = _mm256_cvtepi8_epi32(b);
      i[0] = _mm256_srai_epi32(_mm256_slli_epi32(da, 28), 28);
      i[1] = _mm256_srai_epi32(_mm256_slli_epi32(db, 28), 28);
      i[2] = _mm256_srai_epi32(da, 4);
      i[3] = _mm256_srai_epi32(db, 4);
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) wv[q] = _mm256_mul_ps(_mm256_cvtepi32_ps(i[q]), _mm256_load_ps(sz.s + 8 * q));
  }
};

// 8 E4M3 bytes as f32 (2^-8 x), as e4m3_f16_512 does.
CONDENSE_AVX2 inline __m256 e4m3_f16_256(const uint8_t* c) {
  const __m128i d = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c)));
  return _mm256_cvtph_ps(_mm_and_si128(_mm_slli_epi16(d, 7), _mm_set1_epi16(short(0xBF80))));
}

template <bool Prescaled>
struct E4M3x256 {
  static constexpr bool kScaleAtEnd = false;
  const uint8_t* c;
  ScaleZero256 sz;
  CONDENSE_AVX2 void init(const QMatrix& w, int64_t p) { c = w.codes + p * w.layout.k * 32; }
  CONDENSE_AVX2 void group(const QMatrix& w, int64_t p, int64_t g) { sz.load_avx2(w, p, g, false, Prescaled ? kE4M3Shift : 1.f); }
  CONDENSE_AVX2 void at(int64_t k, __m256* wv) const {
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      __m256 f = e4m3_f16_256(c + k * 32 + 8 * q);
      if constexpr (!Prescaled) f = _mm256_mul_ps(f, _mm256_set1_ps(kE4M3Shift));
      wv[q] = _mm256_mul_ps(f, _mm256_load_ps(sz.s + 8 * q));
    }
  }
};

// --------------------------------------------------------------- portable ---
// Plain C++ on 32 floats (compilers vectorize the loops), same values.

struct F32xP {
  static constexpr bool kScaleAtEnd = false;
  const float* b;
  void init(const QMatrix& w, int64_t p) { b = reinterpret_cast<const float*>(w.codes) + p * w.layout.k * 32; }
  void group(const QMatrix&, int64_t, int64_t) {}
  void at(int64_t k, float* wv) const { std::memcpy(wv, b + k * 32, 32 * sizeof(float)); }
};

template <WCode Code, bool Asym, bool Channel = false>
struct IntxP {
  static constexpr bool kScaleAtEnd = Channel;
  const uint8_t* c;
  ScaleZero256 sz;
  void init(const QMatrix& w, int64_t p) { c = w.codes + p * w.layout.k * (Code == WCode::I4 ? 16 : 32); }
  void group(const QMatrix& w, int64_t p, int64_t g) { sz.load(w, p, g, Asym, 1.f); }
  void at(int64_t k, float* wv) const {
    for (int j = 0; j < 32; ++j) {
      int q;
      if constexpr (Code == WCode::I4) {
        const uint8_t b = c[k * 16 + (j & 15)];
        const int nib = j < 16 ? (b & 15) : (b >> 4);
        q = Asym ? nib - sz.z[j] : nib - ((nib & 8) ? 16 : 0);
      } else {
        const uint8_t b = c[k * 32 + j];
        q = Asym ? int(b) - sz.z[j] : int(int8_t(b));
      }
      wv[j] = Channel ? float(q) : sz.s[j] * float(q);
    }
  }
};

struct E4M3xP {
  static constexpr bool kScaleAtEnd = false;
  const uint8_t* c;
  ScaleZero256 sz;
  void init(const QMatrix& w, int64_t p) { c = w.codes + p * w.layout.k * 32; }
  void group(const QMatrix& w, int64_t p, int64_t g) { sz.load(w, p, g, false, 1.f); }
  void at(int64_t k, float* wv) const {
    for (int j = 0; j < 32; ++j) {
      wv[j] = sz.s[j] * minifloat::e4m3_finite_to_f32(c[k * 32 + j]);
    }
  }
};

}  // namespace condense::kernels::qdec
