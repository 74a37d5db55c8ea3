#include "tests/reference/linalg_ref64.h"

#include <cmath>
#include <random>
#include <utility>

namespace ref {

std::vector<double> hessian(int64_t cols, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> d(0, 1);
  std::vector<double> mix(size_t(cols * cols));
  for (double& v : mix) v = d(rng) * 0.3;
  for (int64_t i = 0; i < cols; ++i) mix[size_t(i * cols + i)] += 1 + 2.0 * (i % 5);
  std::vector<double> x(size_t(n * cols)), h(size_t(cols * cols), 0.0);
  for (int64_t s = 0; s < n; ++s) {
    std::vector<double> z(static_cast<size_t>(cols));
    for (double& v : z) v = d(rng);
    for (int64_t j = 0; j < cols; ++j) {
      double a = 0;
      for (int64_t k = 0; k < cols; ++k) a += z[size_t(k)] * mix[size_t(k * cols + j)];
      x[size_t(s * cols + j)] = a;
    }
  }
  for (int64_t a = 0; a < cols; ++a) {
    for (int64_t b = 0; b < cols; ++b) {
      double t = 0;
      for (int64_t s = 0; s < n; ++s) t += x[size_t(s * cols + a)] * x[size_t(s * cols + b)];
      h[size_t(a * cols + b)] = t / double(n);
    }
  }
  return h;
}

std::vector<double> cholesky(const std::vector<double>& a, int64_t n) {
  std::vector<double> l(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      double s = a[size_t(i * n + j)];
      for (int64_t k = 0; k < j; ++k) s -= l[size_t(i * n + k)] * l[size_t(j * n + k)];
      l[size_t(i * n + j)] = i == j ? std::sqrt(s) : s / l[size_t(j * n + j)];
    }
  }
  return l;
}

std::vector<double> inverse(std::vector<double> a, int64_t n) {
  std::vector<double> inv(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) inv[size_t(i * n + i)] = 1;
  for (int64_t c = 0; c < n; ++c) {
    int64_t p = c;
    for (int64_t r = c + 1; r < n; ++r) if (std::fabs(a[size_t(r * n + c)]) > std::fabs(a[size_t(p * n + c)])) p = r;
    for (int64_t k = 0; k < n; ++k) {
      std::swap(a[size_t(c * n + k)], a[size_t(p * n + k)]);
      std::swap(inv[size_t(c * n + k)], inv[size_t(p * n + k)]);
    }
    const double d = a[size_t(c * n + c)];
    for (int64_t k = 0; k < n; ++k) {
      a[size_t(c * n + k)] /= d;
      inv[size_t(c * n + k)] /= d;
    }
    for (int64_t r = 0; r < n; ++r) {
      if (r == c) continue;
      const double f = a[size_t(r * n + c)];
      for (int64_t k = 0; k < n; ++k) {
        a[size_t(r * n + k)] -= f * a[size_t(c * n + k)];
        inv[size_t(r * n + k)] -= f * inv[size_t(c * n + k)];
      }
    }
  }
  return inv;
}

}  // namespace ref
