#include "kernels/cpu/transformer_f32.h"

#include "kernels/cpu/transformer_backward_f32.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace condense::kernels {

void rmsnorm_f32(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out) {
#pragma omp parallel for schedule(static) if (rows * dim >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float ss = 0.f;
    for (int64_t i = 0; i < dim; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / float(dim) + eps);
    float* o = out + r * dim;
    for (int64_t i = 0; i < dim; ++i) o[i] = xr[i] * inv * w[i];
  }
}

namespace {

// Rotates each (x[i], x[i + hd/2]) pair by +angle (sin_sign = 1) or by -angle
// (sin_sign = -1: the transpose, which is the backward of the forward rotation).
void rope_rotate(float* x, int64_t rows, int64_t ld, int heads, int hd, int64_t pos0, const float* cos_table,
                 const float* sin_table, float sin_sign) {
  const int half = hd / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float* c = cos_table + (pos0 + r) * half;
    const float* s = sin_table + (pos0 + r) * half;
    for (int h = 0; h < heads; ++h) {
      float* v = x + r * ld + int64_t(h) * hd;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half], si = sin_sign * s[i];
        v[i] = a * c[i] - b * si;
        v[i + half] = b * c[i] + a * si;
      }
    }
  }
}

}  // namespace

void rope_f32(float* x, int64_t rows, int64_t ld, int heads, int hd, int64_t pos0, const float* cos_table,
              const float* sin_table) {
  rope_rotate(x, rows, ld, heads, hd, pos0, cos_table, sin_table, 1.0f);
}

void rope_backward_f32(float* dy, int64_t rows, int64_t ld, int heads, int hd, int64_t pos0, const float* cos_table,
                       const float* sin_table) {
  rope_rotate(dy, rows, ld, heads, hd, pos0, cos_table, sin_table, -1.0f);
}

void silu_mul_f32(const float* g, const float* u, int64_t rows, int64_t n, int64_t ld_gu, float* h, int64_t ld_h) {
#pragma omp parallel for schedule(static) if (rows * n >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const float* gr = g + r * ld_gu;
    const float* ur = u + r * ld_gu;
    float* hr = h + r * ld_h;
    for (int64_t j = 0; j < n; ++j) hr[j] = gr[j] / (1.0f + std::exp(-gr[j])) * ur[j];
  }
}

void add_f32(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

namespace {

// Dot product with 16 independent partial sums: a plain `d += a[i] * b[i]` loop
// is one dependent chain the compiler may not reorder (no -ffast-math), which
// made attention latency-bound; this form vectorizes.
inline float dot(const float* a, const float* b, int n) {
  float acc[16] = {};
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float d = 0.f;
  for (; i < n; ++i) d += a[i] * b[i];
  for (int j = 0; j < 16; ++j) d += acc[j];
  return d;
}

}  // namespace

void attention_f32(const float* q, int64_t ldq, const float* kc, const float* vc, int64_t head_stride, int64_t rows,
                   int64_t pos0, int n_heads, int n_kv, int hd, float* out, int64_t ldo) {
  const int group = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(float(hd));
  const int64_t work = rows * n_heads * (pos0 + rows) * hd;
#pragma omp parallel if (work >= (1 << 16))
  {
    std::vector<float> scores(size_t(pos0 + rows));
#pragma omp for schedule(dynamic, 4) collapse(2)
    for (int64_t r = 0; r < rows; ++r) {
      for (int h = 0; h < n_heads; ++h) {
        const int64_t n_pos = pos0 + r + 1;
        const float* qh = q + r * ldq + int64_t(h) * hd;
        const float* kh = kc + int64_t(h / group) * head_stride;
        const float* vh = vc + int64_t(h / group) * head_stride;
        float mx = -INFINITY;
        for (int64_t s = 0; s < n_pos; ++s) {
          scores[size_t(s)] = dot(qh, kh + s * hd, hd) * scale;
          mx = std::max(mx, scores[size_t(s)]);
        }
        float sum = 0.f;
        for (int64_t s = 0; s < n_pos; ++s) {
          scores[size_t(s)] = std::exp(scores[size_t(s)] - mx);
          sum += scores[size_t(s)];
        }
        float* o = out + r * ldo + int64_t(h) * hd;
        std::fill(o, o + hd, 0.f);
        const float inv = 1.0f / sum;
        for (int64_t s = 0; s < n_pos; ++s) {
          const float p = scores[size_t(s)] * inv;
          const float* vs = vh + s * hd;
          for (int i = 0; i < hd; ++i) o[i] += p * vs[i];
        }
      }
    }
  }
}

}  // namespace condense::kernels
