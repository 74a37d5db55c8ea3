// CPU kernels against float64 loops written here, on seeded random inputs at
// awkward sizes, on every ISA path (AVX-512, AVX2 + FMA, portable). Tolerance for a
// K-long f32 accumulation: 2 * K * u * sum_k |a_k b_k| (u = 2^-24), the standard
// bound gamma_K plus one rounding of the output.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <random>
#include <vector>

#include "core/ops/linear.h"
#include "core/ops/transformer.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm_f32.h"
#include "kernels/cpu/linear_f32.h"
#include "kernels/cpu/transformer_f32.h"
#include "kernels/cpu/vexp_f32.h"
#include "tests/isa_test.h"

using namespace condense;
namespace kc = condense::kernels;


namespace {

constexpr double kU = 1.0 / (1 << 24);

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) { return testutil::normal(n, seed, scale); }

class KernelIsa : public testutil::ForcedIsa {};

}  // namespace

TEST_P(KernelIsa, LinearMatchesFloat64AtAwkwardSizes) {
  struct Case { int64_t m, n, k; };
  const Case cases[] = {{1, 1, 1}, {1, 33, 7}, {1, 100, 513}, {2, 31, 300}, {3, 64, 64},
                        {13, 65, 17}, {12, 32, 256}, {37, 172, 300}, {130, 97, 600}};
  uint32_t seed = 1;
  for (const Case& c : cases) {
    const auto x = randn(size_t(c.m * (c.k + 3)), seed++), w = randn(size_t(c.n * c.k), seed++);
    const int64_t ldx = c.k + 3, ldy = c.n + 5;  // strided rows, as fused buffers use
    Tensor wt = Tensor::from_f32(w, {c.n, c.k});
    const auto packed = ops::PackedLinear::pack({&wt});
    std::vector<float> y(size_t(c.m * ldy), -7.f);
    packed.apply(ops::Mat{const_cast<float*>(x.data()), c.m, c.k, ldx}, ops::Mat{y.data(), c.m, c.n, ldy});
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t j = 0; j < c.n; ++j) {
        double ref = 0, mag = 0;
        for (int64_t p = 0; p < c.k; ++p) {
          ref += double(x[size_t(i * ldx + p)]) * w[size_t(j * c.k + p)];
          mag += std::fabs(double(x[size_t(i * ldx + p)]) * w[size_t(j * c.k + p)]);
        }
        const double err = std::fabs(y[size_t(i * ldy + j)] - ref), tol = 2 * double(c.k) * kU * mag + 1e-30;
        ASSERT_LE(err, tol) << "m=" << c.m << " n=" << c.n << " k=" << c.k << " at (" << i << ", " << j << ") got "
                            << y[size_t(i * ldy + j)] << " want " << ref;
      }
      for (int64_t j = c.n; j < ldy; ++j) ASSERT_EQ(y[size_t(i * ldy + j)], -7.f) << "wrote past column n";
    }
  }
}

TEST_P(KernelIsa, FusedPackEqualsSeparateMatrices) {
  const int64_t k = 77, m = 5;
  Tensor a = Tensor::from_f32(randn(size_t(19 * k), 3), {19, k}), b = Tensor::from_f32(randn(size_t(40 * k), 4), {40, k});
  const auto x = randn(size_t(m * k), 5);
  const auto fused = ops::PackedLinear::pack({&a, &b}), pa = ops::PackedLinear::pack({&a}), pb = ops::PackedLinear::pack({&b});
  std::vector<float> yf(size_t(m * 59)), ya(size_t(m * 19)), yb(size_t(m * 40));
  ops::Mat xm{const_cast<float*>(x.data()), m, k, k};
  fused.apply(xm, {yf.data(), m, 59, 59});
  pa.apply(xm, {ya.data(), m, 19, 19});
  pb.apply(xm, {yb.data(), m, 40, 40});
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < 19; ++j) EXPECT_EQ(yf[size_t(i * 59 + j)], ya[size_t(i * 19 + j)]);
    for (int64_t j = 0; j < 40; ++j) EXPECT_EQ(yf[size_t(i * 59 + 19 + j)], yb[size_t(i * 40 + j)]);
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, KernelIsa, ::testing::Values(kc::Isa::Avx512, kc::Isa::Avx2, kc::Isa::Portable),
                         [](const auto& info) { return std::string(kc::isa_name(info.param)); });

TEST(Kernels, RmsNormMatchesFloat64) {
  const int64_t rows = 3, dim = 173;
  const auto x = randn(size_t(rows * dim), 10, 3.f), w = randn(size_t(dim), 11);
  std::vector<float> out(x.size());
  kc::rmsnorm_f32(x.data(), w.data(), rows, dim, 1e-5f, out.data());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(x[size_t(r * dim + i)]) * x[size_t(r * dim + i)];
    const double inv = 1 / std::sqrt(ss / dim + 1e-5);
    for (int64_t i = 0; i < dim; ++i) {
      const double ref = x[size_t(r * dim + i)] * inv * w[size_t(i)];
      // sum of squares (dim roundings) + sqrt, divide, two multiplies
      EXPECT_NEAR(out[size_t(r * dim + i)], ref, (dim / 2.0 + 6) * kU * std::fabs(ref) + 1e-30) << r << "," << i;
    }
  }
}

TEST(Kernels, RopeMatchesFloat64RotateHalf) {
  const int heads = 3, hd = 10, rows = 4;
  const int64_t pos0 = 37;
  auto x = randn(size_t(rows * heads * hd), 12);
  const auto orig = x;
  const auto table = ops::RopeTable::make(64, hd, 10000.0);
  kc::rope_f32(x.data(), rows, heads * hd, heads, hd, pos0, table.cos.f32(), table.sin.f32());
  for (int r = 0; r < rows; ++r) {
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < hd / 2; ++i) {
        const double a = double(pos0 + r) * std::pow(10000.0, -2.0 * i / hd);
        const size_t b = size_t((r * heads + h) * hd);
        const double x1 = orig[b + size_t(i)], x2 = orig[b + size_t(i + hd / 2)];
        const double tol = 4 * kU * (std::fabs(x1) + std::fabs(x2));
        EXPECT_NEAR(x[b + size_t(i)], x1 * std::cos(a) - x2 * std::sin(a), tol);
        EXPECT_NEAR(x[b + size_t(i + hd / 2)], x2 * std::cos(a) + x1 * std::sin(a), tol);
      }
    }
  }
}

// Short chunks take the per-row path, 16+ rows the blocked-GEMM path (several
// 64-row blocks, after a cached prefix).
TEST_P(KernelIsa, AttentionMatchesFloat64WithGqa) {
  struct Case { int rows; int64_t pos0; };
  for (const Case c : {Case{5, 9}, Case{1, 40}, Case{16, 0}, Case{150, 7}}) {
    const int n_heads = 6, n_kv = 2, hd = 12, rows = c.rows;
    const int64_t pos0 = c.pos0, npos = pos0 + rows, max_pos = npos + 3, hs = max_pos * hd;  // head-major [n_kv][max_pos][hd]
    const auto q = randn(size_t(rows * n_heads * hd), 20), k = randn(size_t(n_kv * hs), 21), v = randn(size_t(n_kv * hs), 22);
    std::vector<float> out(size_t(rows * n_heads * hd));
    kc::attention_f32(q.data(), n_heads * hd, k.data(), v.data(), hs, rows, pos0, n_heads, n_kv, hd, out.data(), n_heads * hd);
    for (int r = 0; r < rows; ++r) {
      for (int h = 0; h < n_heads; ++h) {
        const int kvh = h / (n_heads / n_kv);
        std::vector<double> p;
        double mx = -1e300, sum = 0;
        for (int64_t s = 0; s <= pos0 + r; ++s) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += double(q[size_t((r * n_heads + h) * hd + i)]) * k[size_t(kvh * hs + s * hd + i)];
          p.push_back(d / std::sqrt(double(hd)));
          mx = std::max(mx, p.back());
        }
        for (double& e : p) { e = std::exp(e - mx); sum += e; }
        for (int i = 0; i < hd; ++i) {
          double ref = 0, mag = 0;
          for (size_t s = 0; s < p.size(); ++s) {
            ref += p[s] / sum * v[size_t(kvh * hs + int64_t(s) * hd + i)];
            mag += p[s] / sum * std::fabs(v[size_t(kvh * hs + int64_t(s) * hd + i)]);
          }
          // scores carry ~hd roundings and exp amplifies them by |score|; sums over positions add npos
          const double tol = 8 * (hd + double(npos)) * kU * mag;
          ASSERT_NEAR(out[size_t((r * n_heads + h) * hd + i)], ref, tol)
              << "rows " << rows << " pos0 " << pos0 << ": row " << r << " head " << h << " i " << i;
        }
      }
    }
  }
}

TEST_P(KernelIsa, SiluMulMatchesFloat64) {
  const auto g = randn(300, 30, 4.f), u = randn(300, 31);
  std::vector<float> h(300);
  kc::silu_mul_f32(g.data(), u.data(), 3, 100, 100, h.data(), 100);
  for (size_t i = 0; i < 300; ++i) {
    const double ref = g[i] / (1 + std::exp(-double(g[i]))) * u[i];
    EXPECT_NEAR(h[i], ref, 8 * kU * std::fabs(ref) + 1e-30);
  }
}

// gemm_f32 over every transpose combination (through strides), alpha/beta, awkward sizes.
TEST_P(KernelIsa, GemmMatchesFloat64ForEveryTranspose) {
  struct Case { int64_t m, n, k; float alpha, beta; };
  const Case cases[] = {{1, 1, 1, 1.f, 0.f}, {5, 33, 7, 0.5f, 1.f}, {13, 64, 300, 1.f, -0.75f}, {40, 97, 513, -2.f, 0.f}, {12, 32, 256, 1.f, 1.f},
                        {200, 70, 260, 1.f, 0.5f}};  // the last: two 192-row groups, two KC slabs
  uint32_t seed = 100;
  for (const Case& c : cases) {
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        // A stored as [m, k] (ta = 0) or [k, m] (ta = 1); likewise B as [k, n] or [n, k].
        const auto a = randn(size_t(c.m * c.k), seed++), b = randn(size_t(c.k * c.n), seed++);
        const int64_t a_rs = ta ? 1 : c.k, a_cs = ta ? c.m : 1, b_rs = tb ? 1 : c.n, b_cs = tb ? c.k : 1;
        const int64_t ldc = c.n + 3;
        auto cm = randn(size_t(c.m * ldc), seed++);
        const auto c0 = cm;
        kc::gemm_f32(c.m, c.n, c.k, c.alpha, a.data(), a_rs, a_cs, b.data(), b_rs, b_cs, c.beta, cm.data(), ldc);
        for (int64_t i = 0; i < c.m; ++i) {
          for (int64_t j = 0; j < c.n; ++j) {
            double ref = 0, mag = 0;
            for (int64_t p = 0; p < c.k; ++p) {
              const double t = double(a[size_t(i * a_rs + p * a_cs)]) * b[size_t(p * b_rs + j * b_cs)];
              ref += t;
              mag += std::fabs(t);
            }
            const double want = c.alpha * ref + double(c.beta) * c0[size_t(i * ldc + j)];
            const double tol = 2 * double(c.k + 2) * kU * (std::fabs(c.alpha) * mag + std::fabs(c.beta * c0[size_t(i * ldc + j)])) + 1e-30;
            ASSERT_NEAR(cm[size_t(i * ldc + j)], want, tol)
                << "m=" << c.m << " n=" << c.n << " k=" << c.k << " ta=" << ta << " tb=" << tb << " at (" << i << ", " << j << ")";
          }
          for (int64_t j = c.n; j < ldc; ++j) ASSERT_EQ(cm[size_t(i * ldc + j)], c0[size_t(i * ldc + j)]) << "wrote past column n";
        }
      }
    }
  }
}

// exp over its whole useful f32 range (and past both ends) against float64:
// within 4 ulp where the result is normal, below 1e-37 where it underflows, and
// the returned sum within 1e-6 relative.
TEST_P(KernelIsa, ExpShiftMatchesFloat64) {
  std::mt19937 g(5);
  std::uniform_real_distribution<float> u(-120.f, 95.f);
  for (int n : {1, 15, 16, 17, 1000}) {
    std::vector<float> x(static_cast<size_t>(n)), out(x.size());
    for (float& v : x) v = u(g);
    const float shift = 3.25f, mul = 0.8f;
    const double sum = kc::exp_shift_f32(x.data(), shift, mul, n, out.data());
    double want_sum = 0;
    for (int j = 0; j < n; ++j) {
      const double arg = double((x[size_t(j)] - shift) * mul);  // the f32 argument both paths see
      const double want = std::exp(std::min(arg, 88.7));
      want_sum += double(out[size_t(j)]);
      if (want < 1.2e-38) {
        EXPECT_LE(out[size_t(j)], 1e-37f) << "x=" << x[size_t(j)];
      } else {
        EXPECT_NEAR(out[size_t(j)], want, 4 * 1.2e-7 * want) << "x=" << x[size_t(j)];
      }
    }
    EXPECT_NEAR(sum, want_sum, 1e-6 * want_sum);
  }
}
