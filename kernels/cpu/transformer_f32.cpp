#include "kernels/cpu/transformer_f32.h"

#include "kernels/cpu/dot_f32.h"
#include "kernels/cpu/gemm_f32.h"
#include "kernels/cpu/transformer_backward_f32.h"
#include "kernels/cpu/vexp_f32.h"
#include "kernels/cpu/parallel.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace condense::kernels {

void rmsnorm_f32(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out) {
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelElems)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float ss = dot_f32(xr, xr, dim);
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
  // exp(-g) through the vectorised exp (a scalar std::exp per element cost ~10%
  // of a training step); e = exp(min(-g, 88.7)) stays finite, and g / (1 + e)
  // then underflows to -0 as silu does.
#pragma omp parallel if (rows * n >= kParallelElems)
  {
    std::vector<float> e(static_cast<size_t>(n));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* gr = g + r * ld_gu;
      const float* ur = u + r * ld_gu;
      float* hr = h + r * ld_h;
      exp_shift_f32(gr, 0.f, -1.f, n, e.data());
      for (int64_t j = 0; j < n; ++j) hr[j] = gr[j] / (1.0f + e[size_t(j)]) * ur[j];
    }
  }
}

void add_f32(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

namespace {

// One query row against n_pos cached keys (decode and short chunks).
void attention_row(const float* qh, const float* kh, const float* vh, int64_t n_pos, int hd, float scale, float* scores,
                   float* o) {
  float mx = -INFINITY;
  for (int64_t s = 0; s < n_pos; ++s) {
    scores[s] = dot_f32(qh, kh + s * hd, hd) * scale;
    mx = std::max(mx, scores[s]);
  }
  const float inv = float(1.0 / exp_shift_f32(scores, mx, 1.f, n_pos, scores));
  std::fill(o, o + hd, 0.f);
  for (int64_t s = 0; s < n_pos; ++s) {
    const float p = scores[s] * inv;
    const float* vs = vh + s * hd;
    for (int i = 0; i < hd; ++i) o[i] += p * vs[i];
  }
}

// Rows per block of the GEMM form: a 64 x n_pos score block per thread.
constexpr int64_t kAttnBlock = 64;

}  // namespace

void attention_f32(const float* q, int64_t ldq, const float* kc, const float* vc, int64_t head_stride, int64_t rows,
                   int64_t pos0, int n_heads, int n_kv, int hd, float* out, int64_t ldo) {
  const int group = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(float(hd));
  const int64_t work = rows * n_heads * (pos0 + rows) * hd;
  const bool par = work >= kParallelMacs;
  if (rows < 16) {
#pragma omp parallel if (par)
    {
      std::vector<float> scores(size_t(pos0 + rows));
#pragma omp for schedule(dynamic, 4) collapse(2)
      for (int64_t r = 0; r < rows; ++r) {
        for (int h = 0; h < n_heads; ++h) {
          attention_row(q + r * ldq + int64_t(h) * hd, kc + int64_t(h / group) * head_stride,
                        vc + int64_t(h / group) * head_stride, pos0 + r + 1, hd, scale, scores.data(),
                        out + r * ldo + int64_t(h) * hd);
        }
      }
    }
    return;
  }
  // Prefill and training: per head and block of query rows [r0, r1), against
  // keys [0, pos0 + r1) (the causal triangle in rectangles), S = scale Q K^T and
  // O = softmax(S) V are gemm_f32 calls (on this thread: nested regions are
  // serial), so every ISA's micro-kernel does the work.
  const int64_t blocks = (rows + kAttnBlock - 1) / kAttnBlock;
#pragma omp parallel if (par)
  {
    std::vector<float> p(size_t(std::min(kAttnBlock, rows) * (pos0 + rows)));
#pragma omp for schedule(dynamic) collapse(2)
    for (int h = 0; h < n_heads; ++h) {
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t r0 = b * kAttnBlock, nr = std::min(kAttnBlock, rows - r0), nc = pos0 + r0 + nr;
        const float* qh = q + r0 * ldq + int64_t(h) * hd;
        const float* kh = kc + int64_t(h / group) * head_stride;
        const float* vh = vc + int64_t(h / group) * head_stride;
        gemm_f32(nr, nc, hd, scale, qh, ldq, 1, kh, 1, hd, 0.f, p.data(), nc);
        for (int64_t t = 0; t < nr; ++t) {
          float* pt = p.data() + t * nc;
          const int64_t n_vis = pos0 + r0 + t + 1;
          const float mx = *std::max_element(pt, pt + n_vis);
          const float inv = float(1.0 / exp_shift_f32(pt, mx, 1.f, n_vis, pt));
          for (int64_t j = 0; j < n_vis; ++j) pt[j] *= inv;
          std::fill(pt + n_vis, pt + nc, 0.f);
        }
        gemm_f32(nr, hd, nc, 1.f, p.data(), nc, 1, vh, hd, 1, 0.f, out + r0 * ldo + int64_t(h) * hd, ldo);
      }
    }
  }
}

}  // namespace condense::kernels
