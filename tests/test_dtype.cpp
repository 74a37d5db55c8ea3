// Element types: every code of the 8-bit and 4-bit formats, and every code of the
// 16-bit ones, against decoders written here from the specs (OCP 8-bit FP,
// IEEE 754 binary16, bfloat16), plus round-to-nearest-even and saturation edges.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"
#include "kernels/common/int_codes.h"
#include "kernels/common/minifloat.h"

namespace mf = condense::minifloat;
using condense::DType;

namespace {

// Generic spec decoder: sign | E exponent bits | M mantissa bits, bias 2^(E-1)-1.
double spec_decode(uint32_t code, int E, int M, bool ieee) {
  const int s = int(code >> (E + M)) & 1, e = int(code >> M) & ((1 << E) - 1), m = int(code) & ((1 << M) - 1);
  const int bias = (1 << (E - 1)) - 1;
  double v;
  if (ieee && e == (1 << E) - 1) v = m ? std::nan("") : INFINITY;
  else if (!ieee && e == (1 << E) - 1 && m == (1 << M) - 1) v = std::nan("");
  else if (e == 0) v = std::ldexp(double(m) / (1 << M), 1 - bias);
  else v = std::ldexp(1.0 + double(m) / (1 << M), e - bias);
  return s ? -v : v;
}

bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || (a == b && std::signbit(a) == std::signbit(b)); }

}  // namespace

TEST(Fp8, E4M3AllCodesDecodeAsSpec) {
  for (uint32_t c = 0; c < 256; ++c) {
    EXPECT_TRUE(same(mf::e4m3_to_f32(uint8_t(c)), spec_decode(c, 4, 3, false))) << "code " << c;
  }
  EXPECT_EQ(mf::e4m3_to_f32(0x7E), 448.0f);             // largest finite
  EXPECT_EQ(mf::e4m3_to_f32(0x01), std::ldexp(1.f, -9));  // smallest subnormal
  EXPECT_TRUE(std::isnan(mf::e4m3_to_f32(0x7F)));
  EXPECT_TRUE(std::isnan(mf::e4m3_to_f32(0xFF)));
  EXPECT_EQ(mf::e4m3_to_f32(0x78), 256.0f);             // exponent 15 holds normals: no infinities
}

TEST(Fp8, E5M2AllCodesDecodeAsSpec) {
  for (uint32_t c = 0; c < 256; ++c) {
    EXPECT_TRUE(same(mf::e5m2_to_f32(uint8_t(c)), spec_decode(c, 5, 2, true))) << "code " << c;
  }
  EXPECT_EQ(mf::e5m2_to_f32(0x7B), 57344.0f);
  EXPECT_EQ(mf::e5m2_to_f32(0x7C), INFINITY);
  EXPECT_EQ(mf::e5m2_to_f32(0xFC), -INFINITY);
  EXPECT_EQ(mf::e5m2_to_f32(0x01), std::ldexp(1.f, -16));
}

// encode(decode(c)) == c for every non-NaN code; midpoints round to the even code.
template <typename Enc, typename Dec>
void check_rne_all_codes(Enc enc, Dec dec, int n_codes, uint32_t sign_bit) {
  for (uint32_t c = 0; c < uint32_t(n_codes); ++c) {
    const float v = dec(c);
    if (std::isnan(v)) continue;
    EXPECT_EQ(enc(v), c) << "code " << c << " value " << v;
    // Midpoint to the next larger magnitude (same sign), where both are finite.
    const uint32_t next = c + 1;
    if ((next & (sign_bit - 1)) == 0) continue;  // wrapped into the sign bit
    const float w = dec(next);
    if (std::isnan(w) || std::isinf(w) || std::isinf(v)) continue;
    const double mid = (double(v) + double(w)) / 2;
    ASSERT_EQ(double(float(mid)), mid) << "midpoint not exact in f32";
    const uint32_t even = (c % 2 == 0) ? c : next;
    EXPECT_EQ(enc(float(mid)), even) << "tie between codes " << c << " and " << next;
    EXPECT_EQ(enc(std::nextafter(float(mid), float(v))), c) << "just below the midpoint of " << c;
    EXPECT_EQ(enc(std::nextafter(float(mid), float(w))), next) << "just above the midpoint of " << c;
  }
}

TEST(Fp8, E4M3EncodeRoundsToNearestEven) {
  check_rne_all_codes([](float x) { return uint32_t(mf::f32_to_e4m3(x)); }, [](uint32_t c) { return mf::e4m3_to_f32(uint8_t(c)); },
                      256, 0x80);
}

TEST(Fp8, E5M2EncodeRoundsToNearestEven) {
  check_rne_all_codes([](float x) { return uint32_t(mf::f32_to_e5m2(x)); }, [](uint32_t c) { return mf::e5m2_to_f32(uint8_t(c)); },
                      256, 0x80);
}

TEST(Fp8, E4M3SaturatesAndHasNoInfinity) {
  EXPECT_EQ(mf::f32_to_e4m3(449.f), 0x7E);
  EXPECT_EQ(mf::f32_to_e4m3(464.f), 0x7E);  // tie between 448 and (absent) 480: stays 448
  EXPECT_EQ(mf::f32_to_e4m3(1e30f), 0x7E);
  EXPECT_EQ(mf::f32_to_e4m3(INFINITY), 0x7E);
  EXPECT_EQ(mf::f32_to_e4m3(-INFINITY), 0xFE);
  EXPECT_EQ(mf::f32_to_e4m3(NAN) & 0x7F, 0x7F);
  EXPECT_EQ(mf::f32_to_e4m3(-0.0f), 0x80);                       // -0 keeps its sign
  EXPECT_EQ(mf::f32_to_e4m3(std::ldexp(1.f, -10)), 0x00);        // half the smallest subnormal: tie to even (0)
  EXPECT_EQ(mf::f32_to_e4m3(std::ldexp(1.5f, -10)), 0x01);
}

TEST(Fp8, E5M2OverflowsToInfinity) {
  EXPECT_EQ(mf::f32_to_e5m2(57344.f), 0x7B);
  EXPECT_EQ(mf::f32_to_e5m2(61439.f), 0x7B);
  EXPECT_EQ(mf::f32_to_e5m2(61440.f), 0x7C);  // tie between max and 2^16: even mantissa is the overflow
  EXPECT_EQ(mf::f32_to_e5m2(-1e9f), 0xFC);
  EXPECT_EQ(mf::f32_to_e5m2(INFINITY), 0x7C);
  EXPECT_TRUE(std::isnan(mf::e5m2_to_f32(mf::f32_to_e5m2(NAN))));
}

TEST(Half, F16AllCodes) {
  for (uint32_t c = 0; c < 65536; ++c) {
    ASSERT_TRUE(same(mf::f16_to_f32(uint16_t(c)), spec_decode(c, 5, 10, true))) << "code " << c;
  }
  check_rne_all_codes([](float x) { return uint32_t(mf::f32_to_f16(x)); }, [](uint32_t c) { return mf::f16_to_f32(uint16_t(c)); },
                      65536, 0x8000);
  EXPECT_EQ(mf::f32_to_f16(65520.f), 0x7C00);  // tie between 65504 and 2^16 rounds to Inf
  EXPECT_EQ(mf::f32_to_f16(65519.f), 0x7BFF);
}

TEST(Half, Bf16AllCodes) {
  for (uint32_t c = 0; c < 65536; ++c) {
    ASSERT_TRUE(same(mf::bf16_to_f32(uint16_t(c)), spec_decode(c, 8, 7, true))) << "code " << c;
  }
  check_rne_all_codes([](float x) { return uint32_t(mf::f32_to_bf16(x)); }, [](uint32_t c) { return mf::bf16_to_f32(uint16_t(c)); },
                      65536, 0x8000);
}

TEST(Int4, AllSixteenCodes) {
  for (int n = 0; n < 16; ++n) EXPECT_EQ(condense::intcode::i4_from_nibble(uint8_t(n)), n < 8 ? n : n - 16) << "nibble " << n;
  // Every pair of codes packs into one byte, low nibble first, and reads back.
  for (int a = -8; a < 8; ++a) {
    for (int b = -8; b < 8; ++b) {
      uint8_t byte = 0xA5;
      condense::intcode::i4_set(&byte, 0, a);
      condense::intcode::i4_set(&byte, 1, b);
      EXPECT_EQ(condense::intcode::i4_get(&byte, 0), a);
      EXPECT_EQ(condense::intcode::i4_get(&byte, 1), b);
      EXPECT_EQ(byte & 0xF, a & 0xF);
    }
  }
}

TEST(Int4, RoundsHalfToEvenAndClamps) {
  const std::vector<float> in = {2.5f, 3.5f, -2.5f, 7.4f, 7.5f, 100.f, -8.4f, -8.6f, -100.f, 0.49f, NAN};
  const std::vector<int> want = {2, 4, -2, 7, 7, 7, -8, -8, -8, 0, 0};
  std::vector<uint8_t> packed(6, 0);
  condense::convert_from_f32(in.data(), DType::I4, packed.data(), int64_t(in.size()));
  std::vector<float> back(in.size());
  condense::convert_to_f32(DType::I4, packed.data(), back.data(), int64_t(in.size()));
  for (size_t i = 0; i < in.size(); ++i) EXPECT_EQ(back[i], float(want[i])) << "input " << in[i];
}

TEST(Int8, RoundsHalfToEvenAndClamps) {
  const std::vector<float> in = {0.5f, 1.5f, -0.5f, 126.5f, 127.5f, 1000.f, -128.5f, -1000.f};
  const std::vector<int> want = {0, 2, 0, 126, 127, 127, -128, -128};
  for (size_t i = 0; i < in.size(); ++i) EXPECT_EQ(condense::intcode::f32_to_i8(in[i]), want[i]) << "input " << in[i];
}

TEST(DType, TraitsAndNames) {
  for (int i = 0; i < condense::kNumDTypes; ++i) {
    const auto t = DType(i);
    EXPECT_EQ(condense::traits(t).type, t);
    EXPECT_EQ(condense::dtype_from_name(condense::name(t)), t);
  }
  EXPECT_EQ(condense::storage_bytes(DType::I4, 7), 4u);
  EXPECT_EQ(condense::storage_bytes(DType::BF16, 7), 14u);
  EXPECT_THROW(condense::dtype_from_name("float8"), condense::Error);
}

TEST(Tensor, ConversionsRoundTripThroughEveryType) {
  std::vector<float> v(1001);
  uint32_t s = 12345;
  for (auto& x : v) { s = s * 1664525u + 1013904223u; x = float(int(s >> 8) % 2000 - 1000) / 137.f; }
  const auto t = condense::Tensor::from_f32(v, {7, 143});
  for (int i = 0; i < condense::kNumDTypes; ++i) {
    const auto dt = DType(i);
    const auto once = t.to(dt).to(DType::F32);
    const auto twice = once.to(dt).to(DType::F32);  // representable values survive exactly
    ASSERT_EQ(std::memcmp(once.data(), twice.data(), once.nbytes()), 0) << condense::name(dt);
  }
}

// The kernels' branch-free decodes equal the reference codecs on every finite code.
TEST(Minifloat, FiniteFastDecodesEqualTheCodecs) {
  for (uint32_t c = 0; c < 65536; ++c) {
    if (((c >> 10) & 31) == 31) continue;  // Inf / NaN: never handed to the fast path
    const float a = condense::minifloat::f16_finite_to_f32(uint16_t(c)), b = condense::minifloat::f16_to_f32(uint16_t(c));
    ASSERT_EQ(condense::minifloat::f32_bits(a), condense::minifloat::f32_bits(b)) << "f16 code " << c;
  }
  for (uint32_t c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;  // NaN
    const float a = condense::minifloat::e4m3_finite_to_f32(uint8_t(c)), b = condense::minifloat::e4m3_to_f32(uint8_t(c));
    ASSERT_EQ(condense::minifloat::f32_bits(a), condense::minifloat::f32_bits(b)) << "e4m3 code " << c;
  }
}
