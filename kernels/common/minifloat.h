// Bit-exact codecs for small floating-point formats: IEEE f16, bfloat16 and the
// OCP 8-bit formats E4M3 (FN: no infinities, saturates to +-448, NaN = S.1111.111)
// and E5M2 (IEEE-like: infinities and NaNs). Encoding rounds to nearest, ties to
// even. Shared by CPU kernels and GPU kernels, so plain arithmetic only.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/common/host_device.h"

namespace condense::minifloat {

// hipcc refuses memcpy in device code; nvcc and clang define union punning there.
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
CONDENSE_HD uint32_t f32_bits(float x) {
  union { float f; uint32_t u; } v;
  v.f = x;
  return v.u;
}
CONDENSE_HD float bits_f32(uint32_t u) {
  union { float f; uint32_t u; } v;
  v.u = u;
  return v.f;
}
#else
CONDENSE_HD uint32_t f32_bits(float x) { uint32_t u; std::memcpy(&u, &x, 4); return u; }
CONDENSE_HD float bits_f32(uint32_t u) { float x; std::memcpy(&x, &u, 4); return x; }
#endif

// bfloat16 is the top half of an f32; round the dropped half to nearest even.
CONDENSE_HD uint16_t f32_to_bf16(float x) {
  uint32_t u = f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
CONDENSE_HD float bf16_to_f32(uint16_t h) { return bits_f32(uint32_t(h) << 16); }

// A format with `E` exponent bits, `M` mantissa bits and bias 2^(E-1)-1.
// `ieee`: the all-ones exponent encodes Inf/NaN (f16, E5M2); otherwise only
// S.1..1.1..1 is NaN and the rest of that exponent holds normal numbers (E4M3FN).
template <int E, int M, bool ieee>
struct Format {
  static constexpr int bias = (1 << (E - 1)) - 1;
  static constexpr int max_field = ieee ? (1 << E) - 2 : (1 << E) - 1;
  static constexpr int max_mant = ieee ? (1 << M) - 1 : (1 << M) - 2;
  static constexpr uint32_t nan_code = ieee ? (((1u << E) - 1) << M) | (1u << (M - 1)) : (1u << (E + M)) - 1;
  static constexpr uint32_t inf_code = ((1u << E) - 1) << M;  // only meaningful when ieee
  static constexpr uint32_t max_code = (uint32_t(max_field) << M) | uint32_t(max_mant);

  CONDENSE_HD static float decode(uint32_t code) {
    const bool neg = (code >> (E + M)) & 1u;
    const int field = int((code >> M) & ((1u << E) - 1));
    const int mant = int(code & ((1u << M) - 1));
    float v;
    if (ieee && field == (1 << E) - 1) {
      v = mant ? NAN : INFINITY;
    } else if (!ieee && field == (1 << E) - 1 && mant == (1 << M) - 1) {
      v = NAN;
    } else if (field == 0) {
      v = std::ldexp(float(mant), 1 - bias - M);
    } else {
      v = std::ldexp(float((1 << M) + mant), field - bias - M);
    }
    return neg ? -v : v;
  }

  // Round to nearest even. Finite overflow goes to Inf for IEEE formats and
  // saturates to the largest finite value otherwise (OCP "satfinite").
  CONDENSE_HD static uint32_t encode(float x) {
    const uint32_t sign = (f32_bits(x) >> 31) << (E + M);
    if (x != x) return sign | nan_code;
    const float a = std::fabs(x);
    if (a == INFINITY) return sign | (ieee ? inf_code : max_code);
    const float min_normal = std::ldexp(1.0f, 1 - bias);
    if (a < min_normal) {
      // Subnormal grid: integer multiples of 2^(1-bias-M); the scaling is exact.
      const float q = std::nearbyint(std::ldexp(a, bias + M - 1));
      return sign | uint32_t(q);  // q == 2^M lands on the smallest normal, as wanted
    }
    int e;
    const float frac = std::frexp(a, &e);  // a = frac * 2^e, frac in [0.5, 1)
    int field = e - 1 + bias;
    float q = std::nearbyint(std::ldexp(frac * 2.0f - 1.0f, M));
    if (q == float(1 << M)) { q = 0; ++field; }
    if (field > max_field || (field == max_field && int(q) > max_mant)) {
      return ieee ? sign | inf_code : sign | max_code;
    }
    return sign | (uint32_t(field) << M) | uint32_t(q);
  }
};

using F16 = Format<5, 10, true>;
using E4M3 = Format<4, 3, false>;
using E5M2 = Format<5, 2, true>;

CONDENSE_HD uint16_t f32_to_f16(float x) { return uint16_t(F16::encode(x)); }
CONDENSE_HD float f16_to_f32(uint16_t h) { return F16::decode(h); }
CONDENSE_HD uint8_t f32_to_e4m3(float x) { return uint8_t(E4M3::encode(x)); }
CONDENSE_HD float e4m3_to_f32(uint8_t c) { return E4M3::decode(c); }
CONDENSE_HD uint8_t f32_to_e5m2(float x) { return uint8_t(E5M2::encode(x)); }
CONDENSE_HD float e5m2_to_f32(uint8_t c) { return E5M2::decode(c); }

// Exact decodes of finite codes (never Inf or NaN) without branches, so loops of
// them vectorize: the code's exponent and mantissa bits moved into an f32 give
// the value times a power of two (subnormals included), which one multiply
// removes. Kernels use them; a NaN/Inf code must be refused before.
CONDENSE_HD float f16_finite_to_f32(uint16_t h) {
  const float mag = bits_f32(uint32_t(h & 0x7fff) << 13) * 0x1p112f;
  return (h & 0x8000) ? -mag : mag;
}
CONDENSE_HD float e4m3_finite_to_f32(uint8_t c) {
  return bits_f32((uint32_t(c & 0x7f) << 20) | (uint32_t(c & 0x80) << 24)) * 0x1p120f;
}

}  // namespace condense::minifloat
