// Quantizers against float64 references written here: RTN codes and scales per
// scheme (int8 per-channel, int4 groups with a short last group, symmetric and
// asymmetric, fp8 E4M3 per-tensor and per-channel), exhaustive code round
// trips, GPTQ against a column-by-column float64 GPTQ, and GPTQ / AWQ output
// error below round-to-nearest's.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "compress/awq.h"
#include "compress/gptq.h"
#include "compress/rtn.h"
#include "core/error.h"
#include "tests/reference/linalg_ref64.h"
#include "tests/tiny_model.h"

using namespace condense;
using namespace condense::compress;
using ref::cholesky;
using ref::hessian;
using ref::inverse;

namespace {

using testutil::randn;

// Every finite E4M3 value, decoded in float64 from the bit layout (bias 7,
// 3 mantissa bits, subnormals below 2^-6, S.1111.111 is NaN).
std::vector<double> e4m3_values() {
  std::vector<double> v;
  for (int c = 0; c < 128; ++c) {
    const int e = c >> 3, m = c & 7;
    if (e == 15 && m == 7) continue;
    v.push_back(e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, e - 10));
  }
  return v;
}

// float64 reference of one group: the scale range says what the stored scale
// must be close to, and each value's error must be within half a step (or
// clipped to the range end for asymmetric grids).
void check_rtn(const QuantScheme& s, int64_t rows, int64_t cols, uint32_t seed) {
  SCOPED_TRACE(s.describe() + " " + std::to_string(rows) + "x" + std::to_string(cols));
  std::vector<float> w = randn(rows * cols, seed);
  w[3] = 0.31f;  // an outlier
  std::vector<float> out(w.size());
  const WeightCompression wc = quantize_rtn(s, w.data(), rows, cols, {}, out.data());
  const int64_t g = s.granularity == Granularity::Group ? s.group : cols;
  const std::vector<double> e4 = e4m3_values();
  auto check_group = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    double lo = 0, hi = 0;
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c = c0; c < c1; ++c) {
        lo = std::min(lo, double(w[size_t(r * cols + c)]));
        hi = std::max(hi, double(w[size_t(r * cols + c)]));
      }
    }
    const int64_t si = s.scale_index(r0, c0, cols);
    const double scale = wc.scales[size_t(si)];
    double want;
    if (s.type == DType::F8E4M3) want = std::max(-lo, hi) / 448.0;
    else if (s.symmetric) want = std::max(-lo, hi) / s.qmax();
    else want = (hi - lo) / s.qmax();
    // rounded up to an f16 value: at most one f16 ulp (2^-10 relative) above
    ASSERT_GE(scale, want * (1 - 1e-7));
    ASSERT_LE(scale, want * (1 + 1.0 / 1024) + 1e-12);
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c = c0; c < c1; ++c) {
        const double x = w[size_t(r * cols + c)], y = out[size_t(r * cols + c)];
        if (s.type == DType::F8E4M3) {
          // nearest E4M3 value of |x| / scale, in float64
          const double a = std::fabs(x) / scale;
          double best = 1e30;
          for (double v : e4) best = std::min(best, std::fabs(v - a));
          ASSERT_NEAR(std::fabs(std::fabs(x) / scale - std::fabs(y) / scale), best, 1e-6 * std::max(1.0, a)) << r << "," << c;
        } else {
          ASSERT_LE(std::fabs(x - y), 0.5 * scale * (1 + 1e-5)) << r << "," << c;
          const double steps = y / scale;
          ASSERT_NEAR(steps, std::nearbyint(steps), 1e-4);
        }
      }
    }
  };
  if (s.granularity == Granularity::PerTensor) {
    check_group(0, rows, 0, cols);
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c0 = 0; c0 < cols; c0 += g) check_group(r, r + 1, c0, std::min(cols, c0 + g));
    }
  }
  // packed form decodes to the same values
  std::vector<float> again(w.size());
  dequantize(wc, rows, cols, again.data());
  EXPECT_EQ(again, out);
}

}  // namespace

TEST(Rtn, Int8PerChannel) { check_rtn(QuantScheme::of(DType::I8, Granularity::PerChannel), 12, 64, 1); }
TEST(Rtn, Int8Asymmetric) { check_rtn(QuantScheme::of(DType::I8, Granularity::PerChannel, 0, false), 12, 64, 2); }
TEST(Rtn, Int4Group32ShortLastGroup) {
  // 172 = 5 * 32 + 12: stories260K's FFN width
  const QuantScheme s = QuantScheme::of(DType::I4, Granularity::Group, 32);
  EXPECT_EQ(s.groups_per_row(172), 6);
  check_rtn(s, 8, 172, 3);
  check_rtn(QuantScheme::of(DType::I4, Granularity::Group, 32, false), 8, 172, 4);
  check_rtn(QuantScheme::of(DType::I4, Granularity::Group, 128), 8, 172, 5);
}
TEST(Rtn, Fp8PerTensorAndPerChannel) {
  check_rtn(QuantScheme::of(DType::F8E4M3, Granularity::PerTensor), 10, 48, 6);
  check_rtn(QuantScheme::of(DType::F8E4M3, Granularity::PerChannel), 10, 48, 7);
}

TEST(Rtn, ShortLastGroupHasItsOwnScale) {
  // the last 12 columns are 100x smaller: their scale must come from them alone
  const int64_t cols = 44;
  std::vector<float> w = randn(cols, 8, 1.f);
  for (int64_t c = 32; c < cols; ++c) w[size_t(c)] *= 0.01f;
  const WeightCompression wc = quantize_rtn(QuantScheme::of(DType::I4, Granularity::Group, 32), w.data(), 1, cols);
  ASSERT_EQ(wc.scales.size(), 2u);
  double amax = 0;
  for (int64_t c = 32; c < cols; ++c) amax = std::max(amax, std::fabs(double(w[size_t(c)])));
  EXPECT_NEAR(wc.scales[1], amax / 7, amax / 7 / 1000);
}

TEST(Codes, ExhaustiveRoundTrip) {
  for (DType t : {DType::I8, DType::I4}) {
    for (bool sym : {true, false}) {
      const QuantScheme s = QuantScheme::of(t, Granularity::PerChannel, 0, sym);
      const uint8_t zero = sym ? 0 : uint8_t(s.qmax() / 2);
      for (int q = s.qmin(); q <= s.qmax(); ++q) {
        const uint8_t code = t == DType::I4 ? uint8_t(q & 0xf) : uint8_t(q & 0xff);
        const float v = dequant_code(s, code, 0.37f, zero);
        EXPECT_FLOAT_EQ(v, 0.37f * float(sym ? q : q - zero));
        EXPECT_EQ(quant_value(s, v, 0.37f, zero), code) << s.describe() << " q=" << q;
        // half a step either side (just inside) rounds back to the same code
        EXPECT_EQ(quant_value(s, v + 0.37f * 0.49f, 0.37f, zero), code);
        EXPECT_EQ(quant_value(s, v - 0.37f * 0.49f, 0.37f, zero), code);
      }
      // outside the range clamps
      EXPECT_EQ(quant_value(s, 1e6f, 1.f, zero), t == DType::I4 ? uint8_t(s.qmax() & 0xf) : uint8_t(s.qmax()));
    }
  }
  const QuantScheme f8 = QuantScheme::of(DType::F8E4M3, Granularity::PerTensor);
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;  // NaN
    const float v = dequant_code(f8, uint8_t(c), 2.f, 0);
    if (c == 0x80) continue;           // -0 encodes as itself only through the sign
    EXPECT_EQ(quant_value(f8, v, 2.f, 0), uint8_t(c)) << c;
  }
}

TEST(Codes, BadSchemesFailClearly) {
  std::vector<float> w = randn(16, 9);
  EXPECT_THROW(quantize_rtn(QuantScheme::of(DType::F8E4M3, Granularity::PerChannel, 0, false), w.data(), 1, 16), Error);
  EXPECT_THROW(quantize_rtn(QuantScheme::of(DType::I4, Granularity::Group, 0), w.data(), 1, 16), Error);
  EXPECT_THROW(quantize_rtn(QuantScheme::of(DType::BF16, Granularity::PerChannel), w.data(), 1, 16), Error);
  EXPECT_THROW(quant_type_from_name("int3"), Error);
}

TEST(Codes, MaskedElementsStayZeroAndLeaveTheRange) {
  std::vector<float> w = randn(64, 10);
  w[5] = 0;
  w[6] = 0;
  std::vector<float> kept = w;
  const std::vector<uint64_t> mask = mask_from_nonzero(w.data(), 64);
  std::vector<float> out(64);
  const WeightCompression wc = quantize_rtn(QuantScheme::of(DType::I4, Granularity::Group, 16), w.data(), 1, 64, mask, out.data());
  EXPECT_EQ(out[5], 0.f);
  EXPECT_EQ(out[6], 0.f);
  EXPECT_EQ(wc.count_kept(64), 62);
}

// ---- GPTQ --------------------------------------------------------------

namespace {

// The GPTQ recursion one column at a time (no blocks): the error of column i,
// divided by U_ii, is subtracted from every later column j times U_ij, where
// U is the upper Cholesky factor of the damped inverse Hessian. Group scales
// come from the updated weights when the group's first column is reached.
std::vector<double> gptq_ref(const QuantScheme& s, const std::vector<float>& w0, int64_t rows, int64_t cols,
                             std::vector<double> h, double damp) {
  double mean = 0;
  for (int64_t i = 0; i < cols; ++i) mean += h[size_t(i * cols + i)] / double(cols);
  for (int64_t i = 0; i < cols; ++i) h[size_t(i * cols + i)] += damp * mean;
  const std::vector<double> hinv = inverse(h, cols);
  const std::vector<double> l = cholesky(hinv, cols);  // hinv = L L^T, U = L^T: U_ij = L_ji
  std::vector<double> w(w0.begin(), w0.end()), q(w.size());
  std::vector<double> scale(static_cast<size_t>(rows)), zero(static_cast<size_t>(rows));
  for (int64_t i = 0; i < cols; ++i) {
    if (i % s.group == 0) {
      for (int64_t r = 0; r < rows; ++r) {
        double lo = 0, hi = 0;
        for (int64_t c = i; c < std::min(cols, i + s.group); ++c) {
          lo = std::min(lo, w[size_t(r * cols + c)]);
          hi = std::max(hi, w[size_t(r * cols + c)]);
        }
        const double sc = s.symmetric ? std::max(-lo, hi) / s.qmax() : (hi - lo) / s.qmax();
        scale[size_t(r)] = round_scale_up(float(sc));
        zero[size_t(r)] = s.symmetric ? 0 : std::clamp(std::nearbyint(-lo / scale[size_t(r)]), 0.0, double(s.qmax()));
      }
    }
    const double uii = l[size_t(i * cols + i)];
    for (int64_t r = 0; r < rows; ++r) {
      const double x = w[size_t(r * cols + i)];
      const double code = std::clamp(std::nearbyint(x / scale[size_t(r)]) + zero[size_t(r)], double(s.qmin()), double(s.qmax()));
      const double v = scale[size_t(r)] * (code - zero[size_t(r)]);
      q[size_t(r * cols + i)] = v;
      const double e = (x - v) / uii;
      for (int64_t j = i + 1; j < cols; ++j) w[size_t(r * cols + j)] -= e * l[size_t(j * cols + i)];
    }
  }
  return q;
}

}  // namespace

TEST(Gptq, MatchesFloat64ColumnByColumnReference) {
  const int64_t rows = 12, cols = 44;  // 44 = a group of 32 + a short one of 12
  const std::vector<double> h = hessian(cols, 400, 11);
  for (bool sym : {true, false}) {
    const QuantScheme s = QuantScheme::of(DType::I4, Granularity::Group, 32, sym);
    std::vector<float> w = randn(rows * cols, 12);
    const std::vector<double> ref = gptq_ref(s, w, rows, cols, h, 0.01);
    GptqOptions o;
    o.block = 8;  // blocks cut through the groups: lazy updates must not change the result
    GptqReport rep;
    gptq_quantize(s, w.data(), rows, cols, h, o, {}, &rep);
    EXPECT_EQ(rep.retries, 0);
    int same = 0;
    for (int64_t i = 0; i < rows * cols; ++i) same += std::fabs(double(w[size_t(i)]) - ref[size_t(i)]) < 1e-6;
    // float32 accumulation may move a value sitting on a rounding boundary
    EXPECT_GE(same, rows * cols - 2) << (sym ? "sym" : "asym");
  }
}

TEST(Gptq, BeatsRoundToNearestOnCorrelatedInputs) {
  const int64_t rows = 32, cols = 96;
  const std::vector<double> h = hessian(cols, 600, 13);
  for (const QuantScheme& s : {QuantScheme::of(DType::I4, Granularity::Group, 32), QuantScheme::of(DType::I8, Granularity::PerChannel),
                               QuantScheme::of(DType::F8E4M3, Granularity::PerChannel)}) {
    for (bool act_order : {false, true}) {
      const std::vector<float> w = randn(rows * cols, 14);
      std::vector<float> rtn(w.size()), g = w;
      quantize_rtn(s, w.data(), rows, cols, {}, rtn.data());
      GptqOptions o;
      o.act_order = act_order;
      gptq_quantize(s, g.data(), rows, cols, h, o);
      const double e_rtn = output_error(w.data(), rtn.data(), rows, cols, h);
      const double e_gptq = output_error(w.data(), g.data(), rows, cols, h);
      EXPECT_LT(e_gptq, 0.8 * e_rtn) << s.describe() << " act_order " << act_order;
    }
  }
}

TEST(Gptq, RaisesDampingWhenCholeskyFails) {
  const int64_t rows = 4, cols = 16;
  std::vector<double> h = hessian(cols, 100, 15);
  for (int64_t i = 0; i < cols; ++i) h[size_t(i * cols + i)] -= 40;  // indefinite
  std::vector<float> w = randn(rows * cols, 16);
  GptqOptions o;
  o.damp = 0.01;
  GptqReport rep;
  gptq_quantize(QuantScheme::of(DType::I8, Granularity::PerChannel), w.data(), rows, cols, h, o, {}, &rep);
  EXPECT_GT(rep.retries, 0);
  EXPECT_GT(rep.damp_used, 0.01);
  for (float v : w) EXPECT_TRUE(std::isfinite(v));
}

TEST(Gptq, KeepsPrunedElementsZero) {
  const int64_t rows = 8, cols = 32;
  const std::vector<double> h = hessian(cols, 200, 17);
  std::vector<float> w = randn(rows * cols, 18);
  for (size_t i = 0; i < w.size(); i += 3) w[i] = 0;
  const std::vector<uint64_t> mask = mask_from_nonzero(w.data(), rows * cols);
  gptq_quantize(QuantScheme::of(DType::I4, Granularity::Group, 16), w.data(), rows, cols, h, {}, mask);
  for (size_t i = 0; i < w.size(); i += 3) EXPECT_EQ(w[i], 0.f);
}

TEST(Awq, ClipSearchAndScalesDoNotLoseToRoundToNearest) {
  const int64_t rows = 24, cols = 64;
  std::vector<double> h = hessian(cols, 500, 19);
  std::vector<double> absmean(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) absmean[size_t(j)] = std::sqrt(h[size_t(j * cols + j)]);
  const QuantScheme s = QuantScheme::of(DType::I4, Granularity::Group, 32);
  const std::vector<float> w = randn(rows * cols, 20);
  std::vector<float> rtn(w.size()), clip = w;
  quantize_rtn(s, w.data(), rows, cols, {}, rtn.data());
  quantize_clip_search(s, clip.data(), rows, cols, h, {});
  const double e_rtn = output_error(w.data(), rtn.data(), rows, cols, h);
  EXPECT_LT(output_error(w.data(), clip.data(), rows, cols, h), e_rtn);
  const AwqSearch a = awq_search(s, {{w.data(), rows, nullptr}}, cols, h, absmean, {});
  EXPECT_LE(a.loss, a.loss_unscaled);
  EXPECT_NEAR(a.loss_unscaled, e_rtn, 1e-9 * e_rtn);  // alpha 0 is plain RTN
}
