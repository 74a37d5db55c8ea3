// ggml block codecs and the exact maps between condense codes and ggml blocks,
// checked against the float64 decoders of tests/ggml_reference.h (written from
// the published layouts, not from src/).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "io/ggml_quants.h"
#include "io/gguf_codes.h"
#include "kernels/common/minifloat.h"
#include "tests/ggml_reference.h"
#include "tests/test_util.h"

using namespace condense;

namespace {

const uint32_t kBlockTypes[] = {ggml::Q8_0, ggml::Q4_0, ggml::Q4_1, ggml::Q4_K, ggml::Q5_K, ggml::Q6_K};

// Random block bytes with finite, moderate f16 scales where the layout has them.
std::vector<uint8_t> random_blocks(uint32_t t, int nblocks, std::mt19937& rng) {
  const ggml::TypeInfo* ti = ggml::type_info(t);
  std::vector<uint8_t> b(size_t(nblocks) * ti->bytes);
  for (auto& v : b) v = uint8_t(rng());
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  auto set_half = [&](uint8_t* p) {
    const uint16_t h = minifloat::f32_to_f16(scale(rng));
    std::memcpy(p, &h, 2);
  };
  for (int k = 0; k < nblocks; ++k) {
    uint8_t* p = b.data() + size_t(k) * ti->bytes;
    if (t == ggml::Q6_K) set_half(p + 208);
    else set_half(p);
    if (t == ggml::Q4_1 || t == ggml::Q4_K || t == ggml::Q5_K) set_half(p + 2);
  }
  return b;
}

std::vector<float> gaussian(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 0.02f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = g(rng);
  return x;
}

std::vector<double> ref_decode(uint32_t t, const uint8_t* b, int64_t n) {
  const ggmlref::Kind k = ggmlref::kind(t);
  std::vector<double> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n / k.block; ++i) k.decode(b + i * k.bytes, y.data() + i * k.block);
  return y;
}

}  // namespace

// condense's decoders equal the independent float64 decoders on random blocks
// (every bit pattern of codes and packed scales). Tolerance: float32 rounding of
// at most three products and a difference: 4 ulp of the largest term.
TEST(GgmlBlocks, DecodersMatchTheReferenceOnRandomBlocks) {
  std::mt19937 rng(7);
  for (uint32_t t : kBlockTypes) {
    const ggml::TypeInfo* ti = ggml::type_info(t);
    const int nblocks = 16;
    const int64_t n = int64_t(nblocks) * ti->block;
    const std::vector<uint8_t> b = random_blocks(t, nblocks, rng);
    std::vector<float> got(static_cast<size_t>(n));
    ggml::dequantize_row(t, b.data(), got.data(), n);
    const std::vector<double> want = ref_decode(t, b.data(), n);
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double tol = 4 * 6e-8 * (std::fabs(want[size_t(i)]) + 1e-3);
      worst = std::max(worst, std::fabs(got[size_t(i)] - want[size_t(i)]) / tol);
    }
    EXPECT_LE(worst, 1.0) << ti->name;
    EXPECT_EQ(ggml::row_bytes(t, n), uint64_t(nblocks) * ti->bytes) << ti->name;
  }
}

// The reference encoders: decoding what they write (with the test's decoder)
// stays within each type's error on Gaussian weights and on ggml's own test
// signal 0.1 + 2 cos(i). Measured relative RMS errors (Gaussian / cos):
// Q8_0 0.0053 / 0.0034, Q4_0 0.085 / 0.051, Q4_1 0.079 / 0.052,
// Q4_K 0.071 / 0.044, Q6_K 0.018 / 0.012; bounds about 1.5x the larger
// (Q8_0's 0.006 is 1.13x: the values are deterministic).
TEST(GgmlBlocks, EncodersRoundTripWithinTheirPrecision) {
  const std::pair<uint32_t, double> bounds[] = {{ggml::Q8_0, 0.006}, {ggml::Q4_0, 0.13}, {ggml::Q4_1, 0.12}, {ggml::Q4_K, 0.11}, {ggml::Q6_K, 0.027}};
  const int64_t n = 4096;
  std::vector<float> signal(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) signal[size_t(i)] = 0.1f + 2.f * std::cos(float(i));
  for (const auto& x : {gaussian(n, 3), signal}) {
    for (const auto& [t, bound] : bounds) {
      std::vector<uint8_t> b(ggml::row_bytes(t, n));
      ggml::quantize_row(t, x.data(), b.data(), n);
      const std::vector<double> y = ref_decode(t, b.data(), n);
      double e2 = 0, r2 = 0;
      for (int64_t i = 0; i < n; ++i) {
        e2 += (y[size_t(i)] - x[size_t(i)]) * (y[size_t(i)] - x[size_t(i)]);
        r2 += double(x[size_t(i)]) * x[size_t(i)];
      }
      EXPECT_LT(std::sqrt(e2 / r2), bound) << ggml::type_name(t);
      EXPECT_GT(std::sqrt(e2 / r2), 0.0) << ggml::type_name(t) << " cannot be lossless on random data";
    }
  }
}

// Properties of the reference quantizers that llama.cpp's files have: Q8_0's
// d = amax / 127 and q = round(x / d); Q4_0's element of largest magnitude
// gets code 0 (d = that element / -8, so d is negative when it is positive).
TEST(GgmlBlocks, ReferenceQuantizerConventions) {
  const std::vector<float> x = gaussian(32, 11);
  uint8_t q8[34], q4[18];
  ggml::quantize_row(ggml::Q8_0, x.data(), q8, 32);
  ggml::quantize_row(ggml::Q4_0, x.data(), q4, 32);
  float amax = 0, max = 0;
  int at = 0;
  for (int j = 0; j < 32; ++j) {
    if (std::fabs(x[size_t(j)]) > amax) amax = std::fabs(x[size_t(j)]), max = x[size_t(j)], at = j;
  }
  EXPECT_EQ(ggmlref::half(q8), double(minifloat::f16_to_f32(minifloat::f32_to_f16(amax / 127.f))));
  for (int j = 0; j < 32; ++j) EXPECT_EQ(int(int8_t(q8[2 + j])), int(std::round(x[size_t(j)] / (amax / 127.f))));
  EXPECT_EQ(ggmlref::half(q4), double(minifloat::f16_to_f32(minifloat::f32_to_f16(max / -8.f))));
  const int nib = at < 16 ? q4[2 + at] & 15 : q4[2 + at - 16] >> 4;
  EXPECT_EQ(nib, 0);
}

TEST(GgmlBlocks, NonFiniteScalesAreFound) {
  std::mt19937 rng(5);
  for (uint32_t t : kBlockTypes) {
    std::vector<uint8_t> b = random_blocks(t, 4, rng);
    EXPECT_EQ(ggml::first_bad_scale(t, b.data(), 4 * ggml::type_info(t)->block), -1) << ggml::type_name(t);
    const uint16_t nan = 0x7e00;
    std::memcpy(b.data() + 2 * ggml::type_info(t)->bytes + (t == ggml::Q6_K ? 208 : 0), &nan, 2);
    EXPECT_EQ(ggml::first_bad_scale(t, b.data(), 4 * ggml::type_info(t)->block), 2) << ggml::type_name(t);
  }
  // float tensors: element 5 made Inf (F32), NaN (F16), -Inf (BF16); the largest finite values pass
  const uint32_t f32[8] = {0, 0x7f7fffffu, 0, 0, 0, 0x7f800000u, 0, 0};
  EXPECT_EQ(ggml::first_bad_scale(ggml::F32, reinterpret_cast<const uint8_t*>(f32), 8), 5);
  EXPECT_EQ(ggml::first_bad_scale(ggml::F32, reinterpret_cast<const uint8_t*>(f32), 5), -1);
  const uint16_t f16[8] = {0x3c00, 0x7bff, 0, 0, 0, 0x7e00, 0, 0}, bf16[8] = {0x3f80, 0x7f7f, 0, 0, 0, 0xff80, 0, 0};
  EXPECT_EQ(ggml::first_bad_scale(ggml::F16, reinterpret_cast<const uint8_t*>(f16), 8), 5);
  EXPECT_EQ(ggml::first_bad_scale(ggml::F16, reinterpret_cast<const uint8_t*>(f16), 5), -1);
  EXPECT_EQ(ggml::first_bad_scale(ggml::BF16, reinterpret_cast<const uint8_t*>(bf16), 8), 5);
  EXPECT_EQ(ggml::first_bad_scale(ggml::BF16, reinterpret_cast<const uint8_t*>(bf16), 5), -1);
}

namespace {

// Random codes and f16-exact scales for a [rows, cols] int8/int4 g32 weight;
// zeros drawn from `zeros` when asymmetric; a mask pruning ~1/3 when `sparse`.
// `short_scales`: scales of 7 significant bits, so scale * zero is exact in f16.
WeightCompression random_codes(DType type, bool sym, std::vector<int> zeros, int64_t rows, int64_t cols, bool sparse, uint32_t seed,
                               bool short_scales = false) {
  std::mt19937 rng(seed);
  WeightCompression wc = WeightCompression::blank(QuantScheme::of(type, Granularity::Group, 32, sym), rows, cols, sparse ? keep_all(rows * cols) : std::vector<uint64_t>{});
  for (auto& s : wc.scales) {
    s = short_scales ? std::ldexp(float(64 + rng() % 64), -12 - int(rng() % 4))
                     : minifloat::f16_to_f32(minifloat::f32_to_f16(std::uniform_real_distribution<float>(1e-3f, 0.1f)(rng)));
  }
  for (auto& z : wc.zeros) z = uint8_t(zeros[rng() % zeros.size()]);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const int64_t si = (i / cols) * (cols / 32) + (i % cols) / 32;
    int v;
    if (type == DType::I8) v = sym ? int(rng() % 256) - 128 : int(rng() % 256);
    else v = sym ? int(rng() % 16) - 8 : int(rng() % 16);
    // asymmetric Q8_0-mappable groups keep the code within 127/128 of the zero point
    if (!sym && type == DType::I8 && wc.zeros[size_t(si)] == 127 && v == 255) v = 254;
    wc.codes[size_t(i)] = type == DType::I4 ? uint8_t(v & 15) : uint8_t(v);
    if (sparse && rng() % 3 == 0) mask_remove(wc.mask, i);
  }
  return wc;
}

void expect_blocks_equal_codes(const WeightCompression& wc, int64_t rows, int64_t cols, uint32_t t) {
  std::string why;
  ASSERT_TRUE(codes_fit_ggml(wc, rows, cols, t, &why)) << ggml::type_name(t) << ": " << why;
  std::vector<float> want(static_cast<size_t>(rows * cols));
  dequantize(wc, rows, cols, want.data());
  const uint64_t rb = ggml::row_bytes(t, cols);
  std::vector<uint8_t> row(rb);
  for (int64_t r = 0; r < rows; ++r) {
    encode_codes_row(wc, r, cols, t, row.data());
    const std::vector<double> got = ref_decode(t, row.data(), cols);
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(got[size_t(c)], double(want[size_t(r * cols + c)])) << ggml::type_name(t) << " row " << r << " col " << c;
  }
}

}  // namespace

// Codes copied into blocks decode (independently) to exactly condense's values,
// pruned entries to exact zeros.
TEST(GgufCodes, CondenseCodesCopyIntoBlocksExactly) {
  const int64_t rows = 6, cols = 96;
  for (bool sparse : {false, true}) {
    expect_blocks_equal_codes(random_codes(DType::I8, true, {}, rows, cols, sparse, 1), rows, cols, ggml::Q8_0);
    expect_blocks_equal_codes(random_codes(DType::I8, false, {127, 128}, rows, cols, sparse, 2), rows, cols, ggml::Q8_0);
    expect_blocks_equal_codes(random_codes(DType::I4, true, {}, rows, cols, sparse, 3), rows, cols, ggml::Q4_0);
    expect_blocks_equal_codes(random_codes(DType::I4, false, {7, 8}, rows, cols, sparse, 4), rows, cols, ggml::Q4_0);
    // other zero points: Q4_1 (d = scale, m = -scale * zero) when m is exact in f16
    expect_blocks_equal_codes(random_codes(DType::I4, false, {0, 3, 12, 15}, rows, cols, sparse, 5, true), rows, cols, ggml::Q4_1);
  }
  std::string why;
  EXPECT_FALSE(codes_fit_ggml(random_codes(DType::I4, false, {0, 3, 12, 15}, rows, cols, false, 5, true), rows, cols, ggml::Q4_0, &why));
  EXPECT_NE(why.find("spans more than 16 codes"), std::string::npos) << why;
  // a minimum (-scale * zero) f16 cannot hold: no exact Q4_1
  WeightCompression odd = random_codes(DType::I4, false, {13}, rows, cols, false, 8);
  odd.scales[0] = minifloat::f16_to_f32(0x2bff);  // 11 significant bits; times 13 needs 14
  EXPECT_FALSE(codes_fit_ggml(odd, rows, cols, ggml::Q4_1, &why));
  EXPECT_NE(why.find("minimum is not exact in f16"), std::string::npos) << why;
  WeightCompression g64 = random_codes(DType::I4, true, {}, rows, cols, false, 6);
  g64.scheme.group = 64;
  EXPECT_FALSE(codes_fit_ggml(g64, rows, 128, ggml::Q4_0, &why));
  EXPECT_NE(why.find("groups of 32"), std::string::npos) << why;
  WeightCompression inexact = random_codes(DType::I8, true, {}, rows, cols, false, 7);
  inexact.scales[3] = 0.1234567f;
  EXPECT_FALSE(codes_fit_ggml(inexact, rows, cols, ggml::Q8_0, &why));
  EXPECT_NE(why.find("not exact in f16"), std::string::npos) << why;
  EXPECT_FALSE(codes_fit_ggml(inexact, rows, cols, ggml::Q4_K, &why));
}

// Q8_0 / Q4_0 blocks read as condense codes whose values equal the reference
// decode exactly, including llama.cpp's negative d: symmetric when every block
// allows it, else a zero point per group (7/8 for Q4_0, 127/128 for Q8_0).
TEST(GgufCodes, GgmlBlocksReadAsCondenseCodesExactly) {
  std::mt19937 rng(9);
  const int64_t rows = 4, cols = 64;
  for (uint32_t t : {ggml::Q8_0, ggml::Q4_0}) {
    for (bool all_positive : {true, false}) {
      std::vector<uint8_t> b = random_blocks(t, int(rows * cols / 32), rng);
      const int bytes = int(ggml::type_info(t)->bytes);
      if (all_positive) {
        for (int64_t k = 0; k < rows * cols / 32; ++k) b[size_t(k * bytes + 1)] &= 0x7f;  // clear the f16 sign bit
      } else {
        b[1] |= 0x80;                          // block 0: d < 0 ...
        b[2] = 0x80;                           // ... with the code a symmetric group cannot negate (q8 -128, q4 nibble 0)
      }
      const auto wc = codes_from_ggml(t, b.data(), rows, cols);
      ASSERT_TRUE(wc.has_value());
      EXPECT_EQ(wc->scheme.symmetric, all_positive) << ggml::type_name(t);
      EXPECT_EQ(wc->scheme.group, 32);
      std::vector<float> got(static_cast<size_t>(rows * cols));
      dequantize(*wc, rows, cols, got.data());
      const std::vector<double> want = ref_decode(t, b.data(), rows * cols);
      for (int64_t i = 0; i < rows * cols; ++i) ASSERT_EQ(double(got[size_t(i)]), want[size_t(i)]) << ggml::type_name(t) << " element " << i;
      for (float s : wc->scales) EXPECT_GE(s, 0.f);
      // and back: the same values in blocks again
      expect_blocks_equal_codes(*wc, rows, cols, t);
    }
  }
  EXPECT_FALSE(codes_from_ggml(ggml::Q4_K, nullptr, 1, 256).has_value());
}
