// Backward kernels against directional finite differences of forward passes
// written here in float64: for a random direction u and upstream gradient v,
//   <u, grad> (from the f32 kernel)  vs  (<v, F(x + h u)> - <v, F(x - h u)>) / 2h.
// Central differences in float64 with h = 1e-5 carry O(h^2) ~ 1e-10 truncation
// error, so the gap is the f32 kernel's rounding: we allow 1e-4 relative to the
// magnitude sum_i |u_i grad_i| (a few hundred f32 roundings of slack).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "core/ops/transformer.h"
#include "kernels/cpu/transformer_backward_f32.h"

using namespace condense;
namespace kc = condense::kernels;
using Vec = std::vector<double>;

namespace {

Vec randn(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 g(seed);
  std::normal_distribution<double> d(0.0, scale);
  Vec v(n);
  for (auto& x : v) x = d(g);
  return v;
}
std::vector<float> to_f32(const Vec& v) { return std::vector<float>(v.begin(), v.end()); }

// <v, F(x + h u)> - <v, F(x - h u)> over 2h, F mapping x to an output vector.
double directional(const std::function<Vec(const Vec&)>& f, const Vec& x, const Vec& u, const Vec& v, double h = 1e-5) {
  Vec xp = x, xm = x;
  for (size_t i = 0; i < x.size(); ++i) { xp[i] += h * u[i]; xm[i] -= h * u[i]; }
  const Vec fp = f(xp), fm = f(xm);
  double s = 0;
  for (size_t i = 0; i < fp.size(); ++i) s += v[i] * (fp[i] - fm[i]);
  return s / (2 * h);
}

void expect_directional(const char* what, const Vec& u, const std::vector<float>& grad, double fd) {
  double dot = 0, mag = 0;
  for (size_t i = 0; i < u.size(); ++i) { dot += u[i] * grad[i]; mag += std::fabs(u[i] * grad[i]); }
  EXPECT_NEAR(dot, fd, 1e-4 * mag + 1e-12) << what << ": analytic " << dot << " vs finite difference " << fd;
}

}  // namespace

TEST(Backward, RmsNormInputAndWeight) {
  const int64_t rows = 3, dim = 37;
  const double eps = 1e-5;
  const Vec x = randn(size_t(rows * dim), 1, 2.0), w = randn(size_t(dim), 2), v = randn(size_t(rows * dim), 3);
  auto fwd = [&](const Vec& xx, const Vec& ww) {
    Vec y(xx.size());
    for (int64_t t = 0; t < rows; ++t) {
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) ss += xx[size_t(t * dim + i)] * xx[size_t(t * dim + i)];
      const double r = 1 / std::sqrt(ss / dim + eps);
      for (int64_t i = 0; i < dim; ++i) y[size_t(t * dim + i)] = xx[size_t(t * dim + i)] * r * ww[size_t(i)];
    }
    return y;
  };
  const auto xf = to_f32(x), wf = to_f32(w), vf = to_f32(v);
  std::vector<float> dx(xf.size()), dw(size_t(dim), 0.f);
  kc::rmsnorm_backward_f32(xf.data(), wf.data(), vf.data(), rows, dim, float(eps), dx.data(), dw.data());
  const Vec ux = randn(x.size(), 4), uw = randn(w.size(), 5);
  expect_directional("dx", ux, dx, directional([&](const Vec& xx) { return fwd(xx, w); }, x, ux, v));
  expect_directional("dw", uw, dw, directional([&](const Vec& ww) { return fwd(x, ww); }, w, uw, v));
  // dx may alias dy: same result in place.
  std::vector<float> inplace = vf, dw2(size_t(dim), 0.f);
  kc::rmsnorm_backward_f32(xf.data(), wf.data(), inplace.data(), rows, dim, float(eps), inplace.data(), dw2.data());
  EXPECT_EQ(inplace, dx);
  EXPECT_EQ(dw2, dw);
}

TEST(Backward, SiluMul) {
  const int64_t rows = 2, n = 50;
  const Vec g = randn(size_t(rows * n), 6, 3.0), u = randn(size_t(rows * n), 7), v = randn(size_t(rows * n), 8);
  auto fwd = [&](const Vec& gg, const Vec& uu) {
    Vec h(gg.size());
    for (size_t i = 0; i < gg.size(); ++i) h[i] = gg[i] / (1 + std::exp(-gg[i])) * uu[i];
    return h;
  };
  const auto gf = to_f32(g), uf = to_f32(u), vf = to_f32(v);
  std::vector<float> dg(gf.size()), du(uf.size());
  kc::silu_mul_backward_f32(gf.data(), uf.data(), vf.data(), rows, n, n, n, dg.data(), du.data());
  const Vec ug = randn(g.size(), 9), uu = randn(u.size(), 10);
  expect_directional("dg", ug, dg, directional([&](const Vec& gg) { return fwd(gg, u); }, g, ug, v));
  expect_directional("du", uu, du, directional([&](const Vec& xx) { return fwd(g, xx); }, u, uu, v));
}

TEST(Backward, RopeIsTheTransposedRotation) {
  const int heads = 3, hd = 10, rows = 4;
  const int64_t pos0 = 17, ld = heads * hd;
  const auto table = ops::RopeTable::make(64, hd, 10000.0);
  const Vec x = randn(size_t(rows * ld), 11), v = randn(size_t(rows * ld), 12);
  auto fwd = [&](const Vec& xx) {
    Vec y(xx.size());
    for (int r = 0; r < rows; ++r) {
      for (int h = 0; h < heads; ++h) {
        for (int i = 0; i < hd / 2; ++i) {
          const double a = double(pos0 + r) * std::pow(10000.0, -2.0 * i / hd);
          const size_t b = size_t(r * ld + h * hd);
          y[b + size_t(i)] = xx[b + size_t(i)] * std::cos(a) - xx[b + size_t(i + hd / 2)] * std::sin(a);
          y[b + size_t(i + hd / 2)] = xx[b + size_t(i + hd / 2)] * std::cos(a) + xx[b + size_t(i)] * std::sin(a);
        }
      }
    }
    return y;
  };
  auto dx = to_f32(v);
  kc::rope_backward_f32(dx.data(), rows, ld, heads, hd, pos0, table.cos.f32(), table.sin.f32());
  const Vec u = randn(x.size(), 13);
  expect_directional("dx", u, dx, directional(fwd, x, u, v));
}

TEST(Backward, CrossEntropyWithIgnoredTargets) {
  const int64_t rows = 5, vocab = 41;
  const Vec l = randn(size_t(rows * vocab), 14, 4.0);
  const std::vector<int> targets = {3, 40, -1, 0, 17};
  auto loss = [&](const Vec& ll) {
    double s = 0;
    for (int64_t t = 0; t < rows; ++t) {
      if (targets[size_t(t)] < 0) continue;
      double mx = -1e300, z = 0;
      for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, ll[size_t(t * vocab + j)]);
      for (int64_t j = 0; j < vocab; ++j) z += std::exp(ll[size_t(t * vocab + j)] - mx);
      s += mx + std::log(z) - ll[size_t(t * vocab + targets[size_t(t)])];
    }
    return Vec{s};
  };
  const auto lf = to_f32(l);
  std::vector<float> d(lf.size());
  const double got = kc::cross_entropy_f32(lf.data(), targets.data(), rows, vocab, 1.0f, d.data());
  EXPECT_NEAR(got, loss(l)[0], 1e-5 * std::fabs(got));  // f32 logits, float64 sums
  const Vec u = randn(l.size(), 15);
  expect_directional("dlogits", u, d, directional(loss, l, u, Vec{1.0}));
  for (int64_t j = 0; j < vocab; ++j) EXPECT_EQ(d[size_t(2 * vocab + j)], 0.f) << "ignored target row has a gradient";
}

// 150 rows span three of the kernel's 64-row blocks (the causal triangle in rectangles).
class CausalAttention : public ::testing::TestWithParam<int> {};
INSTANTIATE_TEST_SUITE_P(Backward, CausalAttention, ::testing::Values(7, 150));

TEST_P(CausalAttention, GqaBackward) {
  const int n_heads = 6, n_kv = 2, hd = 8, rows = GetParam();
  const int64_t ldq = n_heads * hd, hs = rows * hd;  // k, v head-major [n_kv][rows][hd]
  const Vec q = randn(size_t(rows * ldq), 20), k = randn(size_t(n_kv * hs), 21), v = randn(size_t(n_kv * hs), 22),
            up = randn(size_t(rows * ldq), 23);
  auto fwd = [&](const Vec& qq, const Vec& kk, const Vec& vv) {
    Vec out(size_t(rows * ldq), 0.0);
    for (int t = 0; t < rows; ++t) {
      for (int h = 0; h < n_heads; ++h) {
        const int g = h / (n_heads / n_kv);
        Vec s(size_t(t) + 1);
        double mx = -1e300, z = 0;
        for (int j = 0; j <= t; ++j) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += qq[size_t(t * ldq + h * hd + i)] * kk[size_t(g * hs + j * hd + i)];
          s[size_t(j)] = d / std::sqrt(double(hd));
          mx = std::max(mx, s[size_t(j)]);
        }
        for (double& e : s) { e = std::exp(e - mx); z += e; }
        for (int j = 0; j <= t; ++j) {
          for (int i = 0; i < hd; ++i) out[size_t(t * ldq + h * hd + i)] += s[size_t(j)] / z * vv[size_t(g * hs + j * hd + i)];
        }
      }
    }
    return out;
  };
  const auto qf = to_f32(q), kf = to_f32(k), vf = to_f32(v), upf = to_f32(up);
  std::vector<float> dq(qf.size(), 7.f), dk(kf.size(), 0.f), dv(vf.size(), 0.f);
  kc::attention_backward_f32(qf.data(), ldq, kf.data(), vf.data(), hs, rows, n_heads, n_kv, hd, upf.data(), ldq, dq.data(), ldq,
                             dk.data(), dv.data());
  const Vec uq = randn(q.size(), 24), uk = randn(k.size(), 25), uv = randn(v.size(), 26);
  expect_directional("dq", uq, dq, directional([&](const Vec& x) { return fwd(x, k, v); }, q, uq, up));
  expect_directional("dk", uk, dk, directional([&](const Vec& x) { return fwd(q, x, v); }, k, uk, up));
  expect_directional("dv", uv, dv, directional([&](const Vec& x) { return fwd(q, k, x); }, v, uv, up));
}

TEST(Backward, DistillationKlWithTemperature) {
  const int64_t rows = 4, vocab = 33;
  const Vec t = randn(size_t(rows * vocab), 30, 3.0), s = randn(size_t(rows * vocab), 31, 3.0);
  for (const double temp : {1.0, 2.0, 0.7}) {
    auto loss = [&](const Vec& ss) {
      double total = 0;
      for (int64_t r = 0; r < rows; ++r) {
        double tz = 0, sz = 0;
        for (int64_t j = 0; j < vocab; ++j) { tz += std::exp(t[size_t(r * vocab + j)] / temp); sz += std::exp(ss[size_t(r * vocab + j)] / temp); }
        for (int64_t j = 0; j < vocab; ++j) {
          const double p = std::exp(t[size_t(r * vocab + j)] / temp) / tz, q = std::exp(ss[size_t(r * vocab + j)] / temp) / sz;
          total += temp * temp * p * std::log(p / q);
        }
      }
      return Vec{total};
    };
    const auto tf = to_f32(t), sf = to_f32(s);
    std::vector<float> d(sf.size()), row(static_cast<size_t>(rows));
    const double got = kc::kl_divergence_f32(tf.data(), sf.data(), rows, vocab, float(temp), 1.0f, d.data(), row.data());
    EXPECT_NEAR(got, loss(s)[0], 1e-5 * std::fabs(got)) << "T=" << temp;
    double rows_sum = 0;
    for (float x : row) { EXPECT_GE(x, 0.f); rows_sum += x; }
    EXPECT_NEAR(rows_sum * temp * temp, got, 1e-5 * got);
    const Vec u = randn(s.size(), 32);
    expect_directional("dstudent", u, d, directional(loss, s, u, Vec{1.0}));
  }
  // Identical distributions: zero loss and zero gradient.
  const auto tf = to_f32(t);
  std::vector<float> d(tf.size());
  EXPECT_NEAR(kc::kl_divergence_f32(tf.data(), tf.data(), rows, vocab, 2.f, 1.f, d.data(), nullptr), 0.0, 1e-6);
  for (float x : d) EXPECT_NEAR(x, 0.f, 1e-6f);
}
