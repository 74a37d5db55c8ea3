// The native linear kernels of every stored encoding (kernels/cpu/qlinear.h)
// against float64 references computed here from the stored codes, on random
// codes, scales and zero points (never zeros), odd shapes and m = 1..17 and 40,
// on every ISA path. The effective weight is decoded here from the published
// layouts (two's complement nibbles, OCP E4M3 bit fields) independently of the
// library. Tolerance: a K-long f32 accumulation of fl(s*q) * x is within
// 2 * (K + 1) * u * sum_k |x_k w_k| of the float64 sum (u = 2^-24: gamma_K, one
// rounding of each weight, one of the output).
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ops/linear.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/qlinear.h"
#include "tests/isa_test.h"

using namespace condense;
namespace kc = condense::kernels;


namespace {

constexpr double kU = 1.0 / (1 << 24);

struct Scheme {
  std::string name;
  kc::WCode code;
  int64_t group;  // 0: per channel
  bool per_tensor, asym, f16_scales;
  float scale_mag;  // scales drawn around this
};

const Scheme kSchemes[] = {
    {"int8 per-channel", kc::WCode::I8, 0, false, false, true, 0.01f},
    {"int8 g32 asym", kc::WCode::I8, 32, false, true, false, 0.01f},
    {"int8 per-tensor asym", kc::WCode::I8, 0, true, true, false, 0.01f},
    {"int4 g32", kc::WCode::I4, 32, false, false, true, 0.1f},
    {"int4 g32 asym", kc::WCode::I4, 32, false, true, true, 0.1f},
    {"int4 g48 asym f32-scales", kc::WCode::I4, 48, false, true, false, 0.1f},
    {"int4 per-tensor asym", kc::WCode::I4, 0, true, true, false, 0.1f},
    {"fp8 per-tensor", kc::WCode::E4M3, 0, true, false, false, 0.003f},
    {"fp8 per-channel f16", kc::WCode::E4M3, 0, false, false, true, 0.003f},
    {"fp8 g64 huge scales", kc::WCode::E4M3, 64, false, false, false, 3000.f},
    {"f32", kc::WCode::F32, 0, false, false, false, 1.f},
};

// The value of an OCP E4M3 (FN) byte from its fields: bias 7, subnormals at
// exponent field 0; S.1111.111 is NaN (never generated here).
double e4m3_value(uint8_t b) {
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  const double v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -v : v;
}

float f16_round(float x) {  // nearest f16 value (x is in f16's normal range here)
  const int e = std::ilogb(x);
  const float q = std::ldexp(1.f, e - 10);
  return std::nearbyint(x / q) * q;
}

struct Matrix {
  int64_t n, k;
  Scheme s;
  std::vector<uint8_t> codes, zeros;
  std::vector<float> scales, dense;
  std::vector<float> eff;  // fl(s * q), computed here

  int64_t glen() const { return s.group > 0 ? s.group : k; }
  int64_t groups() const { return (k + glen() - 1) / glen(); }

  Matrix(const Scheme& sc, int64_t n_, int64_t k_, uint32_t seed) : n(n_), k(k_), s(sc) {
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> u(0.5f, 1.5f);
    std::normal_distribution<float> nd;
    eff.resize(size_t(n * k));
    if (s.code == kc::WCode::F32) {
      dense.resize(size_t(n * k));
      for (auto& v : dense) v = nd(g);
      eff = dense;
      return;
    }
    const int64_t ns = s.per_tensor ? 1 : n * groups();
    scales.resize(size_t(ns));
    for (auto& v : scales) v = s.f16_scales ? f16_round(s.scale_mag * u(g)) : s.scale_mag * u(g);
    if (s.asym) {
      zeros.resize(size_t(ns));
      for (auto& z : zeros) z = uint8_t(s.code == kc::WCode::I4 ? g() % 16 : g() % 256);
    }
    codes.resize(size_t(n * k));
    for (auto& c : codes) {
      if (s.code == kc::WCode::I4) c = uint8_t(g() % 16);
      else if (s.code == kc::WCode::E4M3) do c = uint8_t(g() % 256); while ((c & 0x7f) == 0x7f);
      else c = uint8_t(g() % 256);
    }
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < k; ++c) {
        const int64_t si = s.per_tensor ? 0 : r * groups() + c / glen();
        const uint8_t q = codes[size_t(r * k + c)];
        double v;
        if (s.code == kc::WCode::E4M3) v = e4m3_value(q);
        else if (s.code == kc::WCode::I8) v = s.asym ? int(q) - int(zeros[size_t(si)]) : int(int8_t(q));
        else v = s.asym ? int(q) - int(zeros[size_t(si)]) : (q >= 8 ? int(q) - 16 : int(q));
        eff[size_t(r * k + c)] = float(double(scales[size_t(si)]) * v);  // one rounding: fl(s * q)
      }
    }
  }

  // acts: 32 f32 inputs (codes decoded to f32), 8 int8 (a8), 16 int16 (a16).
  ops::LinearPart part(int acts = 32) const {
    ops::LinearPart p;
    p.int8_activations = acts == 8;
    p.int16_activations = acts == 16;
    p.rows = n;
    p.cols = k;
    p.code = s.code;
    p.group = s.group;
    p.per_tensor = s.per_tensor;
    p.asym = s.asym;
    if (s.code == kc::WCode::F32) {
      p.f32 = dense.data();
    } else {
      p.codes = codes.data();
      p.scales = scales.data();
      p.zeros = s.asym ? zeros.data() : nullptr;
    }
    return p;
  }
};

std::vector<float> randn(size_t n, uint32_t seed) { return testutil::normal(n, seed); }

class QLinearIsa : public testutil::ForcedIsa {};

std::vector<float> apply(const ops::PackedLinear& p, const std::vector<float>& x, int64_t m, int64_t ldx, int64_t ldy) {
  std::vector<float> y(size_t(m * ldy), -7.f);
  p.apply({const_cast<float*>(x.data()), m, p.in_features(), ldx}, {y.data(), m, p.out_features(), ldy});
  return y;
}

}  // namespace

TEST_P(QLinearIsa, EveryEncodingMatchesFloat64FromItsCodes) {
  struct Shape { int64_t n, k; };
  const Shape shapes[] = {{172, 64}, {64, 172}, {33, 300}, {100, 520}};
  uint32_t seed = 10;
  for (const Scheme& sc : kSchemes) {
    for (const Shape& sh : shapes) {
      const Matrix w(sc, sh.n, sh.k, seed++);
      const ops::PackedLinear p = ops::PackedLinear::pack_parts({w.part()});
      for (int64_t m : {1, 2, 3, 5, 8, 12, 13, 17, 40}) {
        const int64_t ldx = sh.k + 3, ldy = sh.n + 5;
        const auto x = randn(size_t(m * ldx), seed++);
        const auto y = apply(p, x, m, ldx, ldy);
        for (int64_t r = 0; r < m; ++r) {
          for (int64_t j = 0; j < sh.n; ++j) {
            double ref = 0, mag = 0;
            for (int64_t c = 0; c < sh.k; ++c) {
              const double t = double(x[size_t(r * ldx + c)]) * double(w.eff[size_t(j * sh.k + c)]);
              ref += t;
              mag += std::fabs(t);
            }
            ASSERT_NEAR(y[size_t(r * ldy + j)], ref, 2.0 * double(sh.k + 1) * kU * mag + 1e-30)
                << sc.name << " n=" << sh.n << " k=" << sh.k << " m=" << m << " row " << r << " col " << j;
          }
          ASSERT_EQ(y[size_t(r * ldy + sh.n)], -7.f) << "wrote past n";
        }
      }
    }
  }
}

// Decoding gives exactly fl(s * q), and every encoding reduces like the f32
// kernel: the result equals the f32 kernel on the effective weights, bit for
// bit. (Per-channel and per-tensor int8 multiply the finished sum by the scale
// instead: covered by the float64 test's bound.)
TEST_P(QLinearIsa, EqualsTheF32KernelOnEffectiveWeightsBitwise) {
  uint32_t seed = 500;
  for (const Scheme& sc : kSchemes) {
    if (sc.code == kc::WCode::I8 && (sc.group == 0 || sc.per_tensor)) continue;
    const Matrix w(sc, 100, 520, seed++);
    Tensor eff = Tensor::from_f32(w.eff, {w.n, w.k});
    const auto q = ops::PackedLinear::pack_parts({w.part()});
    const auto f = ops::PackedLinear::pack({&eff});
    for (int64_t m : {1, 4, 17}) {
      const auto x = randn(size_t(m * w.k), seed++);
      const auto yq = apply(q, x, m, w.k, w.n), yf = apply(f, x, m, w.k, w.n);
      ASSERT_EQ(0, std::memcmp(yq.data(), yf.data(), yq.size() * 4)) << sc.name << " m=" << m;
    }
  }
}

// A row's result does not depend on m, on the other rows or on the thread count.
TEST_P(QLinearIsa, BatchInvariantBitwise) {
  uint32_t seed = 900;
  for (const Scheme& sc : kSchemes) {
    const Matrix w(sc, 172, 600, seed++);
    const auto p = ops::PackedLinear::pack_parts({w.part()});
    const auto rows = randn(size_t(40 * w.k), seed++);
    std::vector<std::vector<float>> alone(40);
    for (int64_t r = 0; r < 40; ++r) alone[size_t(r)] = apply(p, std::vector<float>(rows.begin() + r * w.k, rows.begin() + (r + 1) * w.k), 1, w.k, w.n);
    std::mt19937 g(seed++);
    for (int64_t m : {2, 7, 12, 13, 25, 40}) {
      // A batch of m rows drawn (with repeats) from the 40, in random order.
      std::vector<int64_t> pick(static_cast<size_t>(m));
      std::vector<float> x(size_t(m * w.k));
      for (int64_t i = 0; i < m; ++i) {
        pick[size_t(i)] = int64_t(g() % 40);
        std::memcpy(&x[size_t(i * w.k)], &rows[size_t(pick[size_t(i)] * w.k)], size_t(w.k) * 4);
      }
      const auto y = apply(p, x, m, w.k, w.n);
      for (int64_t i = 0; i < m; ++i) {
        ASSERT_EQ(0, std::memcmp(&y[size_t(i * w.n)], alone[size_t(pick[size_t(i)])].data(), size_t(w.n) * 4))
            << sc.name << " m=" << m << " row " << i;
      }
    }
  }
}

TEST_P(QLinearIsa, MixedEncodingsFuseLikeSeparateMatrices) {
  const Matrix a(kSchemes[3], 64, 96, 1), b(kSchemes[3], 40, 96, 2), c(kSchemes[7], 33, 96, 3), d(kSchemes[10], 31, 96, 4),
      e(kSchemes[0], 20, 96, 5);
  const auto fused = ops::PackedLinear::pack_parts({a.part(), b.part(), c.part(), d.part(), e.part()});
  EXPECT_EQ(fused.out_features(), 64 + 40 + 33 + 31 + 20);
  EXPECT_EQ(fused.describe(), "int4 g32 + fp8-e4m3 per-tensor + f32 + int8 per-channel");
  for (int64_t m : {1, 9}) {
    const auto x = randn(size_t(m * 96), 77 + uint32_t(m));
    const auto y = apply(fused, x, m, 96, fused.out_features());
    int64_t col = 0;
    for (const Matrix* w : {&a, &b, &c, &d, &e}) {
      const auto ys = apply(ops::PackedLinear::pack_parts({w->part()}), x, m, 96, w->n);
      for (int64_t r = 0; r < m; ++r) {
        ASSERT_EQ(0, std::memcmp(&y[size_t(r * fused.out_features() + col)], &ys[size_t(r * w->n)], size_t(w->n) * 4)) << w->s.name;
      }
      col += w->n;
    }
  }
}

TEST(QLinear, PackedBytesAreTheStoredBytes) {
  // int4 g32 with f16 scales: 4 bits + 16 / 32 bits per weight, as the .cpk stores it.
  const Matrix w(kSchemes[3], 256, 512, 3);
  const auto p = ops::PackedLinear::pack_parts({w.part()});
  EXPECT_EQ(p.weight_bytes(), size_t(256 * 512 / 2 + 256 * 16 * 2));
  const Matrix a(kSchemes[4], 256, 512, 4);  // + u4 zero points
  EXPECT_EQ(ops::PackedLinear::pack_parts({a.part()}).weight_bytes(), size_t(256 * 512 / 2 + 256 * 16 * 2 + 256 * 16 / 2));
}

TEST(QLinear, RefusesTheFp8NanCode) {
  Matrix w(kSchemes[8], 32, 32, 5);
  w.codes[7] = 0xff;
  EXPECT_THROW(ops::PackedLinear::pack_parts({w.part()}), Error);
}

// Integer activations (W8A8 / W4A8, and the weight-only a16 path): x rows
// quantized here as the recipes define it (s = amax / Q, q = round(x / s)
// clamped to +-Q, Q = 127 or 32639), the reference sum_k (s q_k) w(n, k) in
// float64. The kernel's integer sums are exact; its float work is one
// conversion and one FMA per block (a16: every 256 positions) and a final
// multiply, inside the same 2 (K + 1) u sum |x w| bound, for m = 1..17 and 40. k = 1100 per channel
// runs five a16 blocks, the last one ragged.
TEST_P(QLinearIsa, IntegerActivationsMatchFloat64) {
  struct Shape { int64_t n, k; };
  const Shape shapes[] = {{172, 64}, {64, 172}, {33, 300}, {100, 520}, {40, 1100}};
  uint32_t seed = 2000;
  for (int bits : {8, 16}) {
    const float qmax = bits == 8 ? 127.f : 32639.f;
    for (const Scheme& sc : kSchemes) {
      if (sc.code != kc::WCode::I8 && sc.code != kc::WCode::I4) continue;
      for (const Shape& sh : shapes) {
        const Matrix w(sc, sh.n, sh.k, seed++);
        const ops::PackedLinear p = ops::PackedLinear::pack_parts({w.part(bits)});
        ASSERT_TRUE(bits == 8 ? p.integer_activations() : p.int16_activations()) << p.describe();
        for (int64_t m : {1, 2, 3, 4, 5, 9, 17, 40}) {
          const int64_t ldx = sh.k + 3, ldy = sh.n + 5;
          auto x = randn(size_t(m * ldx), seed++);
          if (m > 2) std::fill(x.begin() + 2 * ldx, x.begin() + 2 * ldx + sh.k, 0.f);  // a zero row gives 0
          const auto y = apply(p, x, m, ldx, ldy);
          for (int64_t r = 0; r < m; ++r) {
            float amax = 0;
            for (int64_t c = 0; c < sh.k; ++c) amax = std::fmax(amax, std::fabs(x[size_t(r * ldx + c)]));
            const float s = amax / qmax, inv = amax > 0 ? 1.f / s : 0.f;
            for (int64_t j = 0; j < sh.n; ++j) {
              double ref = 0, mag = 0;
              for (int64_t c = 0; c < sh.k; ++c) {
                const float q = std::fmin(qmax, std::fmax(-qmax, std::nearbyint(x[size_t(r * ldx + c)] * inv)));
                const double t = double(s) * q * double(w.eff[size_t(j * sh.k + c)]);
                ref += t;
                mag += std::fabs(t);
              }
              ASSERT_NEAR(y[size_t(r * ldy + j)], ref, 2.0 * double(sh.k + 1) * kU * mag + 1e-30)
                  << sc.name << " x int" << bits << ", n=" << sh.n << " k=" << sh.k << " m=" << m << " row " << r << " col " << j;
            }
          }
        }
      }
    }
  }
}

// a16 sums that would overflow int32 without the 256-position blocks: every
// code at its extreme (the unsigned code 255 or 0 against the zero point) and
// every activation at +-32639, k = 4000 (one per-channel group): the result is
// still the float64 one.
TEST_P(QLinearIsa, Int16ActivationsNeverOverflow) {
  for (bool asym : {false, true}) {
    Scheme sc{"int8 extreme", kc::WCode::I8, 0, false, asym, false, 0.01f};
    Matrix w(sc, 40, 4000, 9);
    for (int64_t r = 0; r < w.n; ++r) {
      for (int64_t c = 0; c < w.k; ++c) w.codes[size_t(r * w.k + c)] = asym ? (r % 2 ? 255 : 0) : (r % 2 ? 127 : 0x81);  // +127 / -127
      if (asym) w.zeros[size_t(r)] = r % 2 ? 0 : 255;
      for (int64_t c = 0; c < w.k; ++c) {
        const double q = asym ? int(w.codes[size_t(r * w.k + c)]) - int(w.zeros[size_t(r)]) : int(int8_t(w.codes[size_t(r * w.k + c)]));
        w.eff[size_t(r * w.k + c)] = float(double(w.scales[size_t(r)]) * q);
      }
    }
    const auto p = ops::PackedLinear::pack_parts({w.part(16)});
    for (float sign : {1.f, -1.f}) {
      const std::vector<float> x(size_t(w.k), sign * 0.75f);
      const auto y = apply(p, x, 1, w.k, w.n);
      for (int64_t j = 0; j < w.n; ++j) {
        double ref = 0;
        for (int64_t c = 0; c < w.k; ++c) ref += double(sign * 0.75f) * w.eff[size_t(j * w.k + c)];
        ASSERT_NEAR(y[size_t(j)], ref, 1e-5 * std::fabs(ref)) << "asym " << asym << " row " << j;
      }
    }
  }
}

TEST_P(QLinearIsa, IntegerActivationsBatchInvariantBitwise) {
  uint32_t seed = 3000;
  for (int bits : {8, 16}) {
    for (const Scheme& sc : kSchemes) {
      if (sc.code != kc::WCode::I8 && sc.code != kc::WCode::I4) continue;
      const Matrix w(sc, 100, 600, seed++);
      const auto p = ops::PackedLinear::pack_parts({w.part(bits)});
      const auto rows = randn(size_t(19 * w.k), seed++);
      const auto all = apply(p, rows, 19, w.k, w.n);
      for (int64_t r = 0; r < 19; ++r) {
        const auto one = apply(p, std::vector<float>(rows.begin() + r * w.k, rows.begin() + (r + 1) * w.k), 1, w.k, w.n);
        ASSERT_EQ(0, std::memcmp(one.data(), &all[size_t(r * w.n)], size_t(w.n) * 4)) << sc.name << " int" << bits << " row " << r;
      }
    }
  }
}

// Pruned f32 and int8 weights run the sparse kernels, which store and read
// only the kept codes: the result equals the dense kernel on the same weights
// (pruned codes meaning 0) bit for bit, at every sparsity, for unstructured
// masks and 2:4, on every m; int8 with integer activations too (a8).
TEST_P(QLinearIsa, SparseEqualsDenseBitwise) {
  uint32_t seed = 4000;
  for (const Scheme& sc : kSchemes)
  for (bool a8 : {false, true}) {
    if (sc.code != kc::WCode::F32 && sc.code != kc::WCode::I8) continue;
    if (a8 && sc.code != kc::WCode::I8) continue;
    for (double sparsity : {0.0, 0.5, 0.7, 0.97, -1.0}) {  // -1: 2:4 (two of every four along a row kept)
      Matrix w(sc, 100, 300, seed++);
      std::vector<uint64_t> mask(size_t((w.n * w.k + 63) / 64), 0);
      std::mt19937 g(seed++);
      std::uniform_real_distribution<double> u(0, 1);
      for (int64_t r = 0; r < w.n; ++r) {
        for (int64_t c = 0; c < w.k; ++c) {
          const int64_t e = r * w.k + c;
          const bool keep = sparsity < 0 ? ((c % 4) == int64_t(g() % 2) || (c % 4) == 3) : u(g) >= sparsity;
          if (keep) mask[size_t(e >> 6)] |= uint64_t(1) << (e & 63);
          else {  // the dense copy's codes mean 0
            w.eff[size_t(e)] = 0.f;
            if (sc.code == kc::WCode::F32) w.dense[size_t(e)] = 0.f;
            else w.codes[size_t(e)] = sc.asym ? w.zeros[size_t(sc.per_tensor ? 0 : r * w.groups() + c / w.glen())] : 0;
          }
        }
      }
      ops::LinearPart sp = w.part(a8 ? 8 : 32);
      sp.mask = mask.data();
      const auto ps = ops::PackedLinear::pack_parts({sp}), pd = ops::PackedLinear::pack_parts({w.part(a8 ? 8 : 32)});
      if (sparsity >= 0.5) {
        EXPECT_LT(ps.weight_bytes(), pd.weight_bytes()) << sc.name << " " << sparsity << " a8=" << a8;
      }
      for (int64_t m : {1, 3, 13, 40}) {  // 40: more rows than AVX-512 expands in registers for
        const auto x = randn(size_t(m * w.k), seed++);
        const auto ys = apply(ps, x, m, w.k, w.n), yd = apply(pd, x, m, w.k, w.n);
        ASSERT_EQ(0, std::memcmp(ys.data(), yd.data(), ys.size() * 4)) << sc.name << " sparsity " << sparsity << " a8=" << a8 << " m=" << m;
      }
      std::vector<float> row(size_t(w.k));
      for (int64_t r : {0, 33, 99}) {
        ps.row(r, row.data());
        ASSERT_EQ(0, std::memcmp(row.data(), &w.eff[size_t(r * w.k)], size_t(w.k) * 4)) << sc.name << " a8=" << a8 << " row " << r;
      }
    }
  }
}

// Big enough to open the OpenMP regions (kernels/cpu/parallel.h): two threads
// give every row the bits one thread gives (each output element is reduced by
// one thread in one order).
TEST_P(QLinearIsa, ThreadsChangeNothing) {
  const int saved = omp_get_max_threads();
  for (const Scheme* sc : {&kSchemes[1], &kSchemes[3], &kSchemes[10]}) {  // int8 g32 asym, int4 g32, f32
    for (int acts : {32, 8, 16}) {
      if (acts != 32 && sc->code == kc::WCode::F32) continue;
      const Matrix w(*sc, 4096, sc->code == kc::WCode::F32 ? 1024 : 4096, 77);  // m = 1 streams >= 16 MB
      const auto p = ops::PackedLinear::pack_parts({w.part(acts)});
      for (int64_t m : {1, 40}) {
        const auto x = randn(size_t(m * w.k), 78 + uint32_t(m));
        omp_set_num_threads(1);
        const auto one = apply(p, x, m, w.k, w.n);
        omp_set_num_threads(2);
        const auto two = apply(p, x, m, w.k, w.n);
        ASSERT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * 4)) << sc->name << " acts " << acts << " m=" << m;
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST(QLinear, RowLookupGivesTheEffectiveWeightsInEveryLayout) {
  for (const Scheme& sc : kSchemes) {
    const Matrix w(sc, 70, 172, 11);
    for (int acts : {32, 8, 16}) {
      const auto p = ops::PackedLinear::pack_parts({w.part(acts)});
      std::vector<float> row(size_t(w.k));
      for (int64_t r : {0, 17, 31, 32, 69}) {
        p.row(r, row.data());
        ASSERT_EQ(0, std::memcmp(row.data(), &w.eff[size_t(r * w.k)], size_t(w.k) * 4)) << sc.name << " acts " << acts << " row " << r;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, QLinearIsa, ::testing::ValuesIn(kc::kAllIsas), testutil::isa_test_name);
