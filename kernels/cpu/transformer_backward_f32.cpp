#include "kernels/cpu/transformer_backward_f32.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace condense::kernels {

void rmsnorm_backward_f32(const float* x, const float* w, const float* dy, int64_t rows, int64_t dim, float eps, float* dx,
                          float* dw) {
  // r = 1/sqrt(mean(x^2) + eps); dw_i += dy_i x_i r;
  // dx_i = r w_i dy_i - x_i r^3 / dim * sum_j w_j dy_j x_j.
  // Pass 1 (rows in order, so dw does not depend on the thread count) reads dy
  // before pass 2 may overwrite it through dx.
  std::vector<float> r(static_cast<size_t>(rows)), c(static_cast<size_t>(rows));
  for (int64_t t = 0; t < rows; ++t) {
    const float* xt = x + t * dim;
    const float* gt = dy + t * dim;
    double ss = 0, dot = 0;
    for (int64_t i = 0; i < dim; ++i) {
      ss += double(xt[i]) * xt[i];
      dot += double(w[i]) * gt[i] * xt[i];
    }
    const double rt = 1.0 / std::sqrt(ss / double(dim) + eps);
    r[size_t(t)] = float(rt);
    c[size_t(t)] = float(rt * rt * rt * dot / double(dim));
    for (int64_t i = 0; i < dim; ++i) dw[i] += gt[i] * xt[i] * float(rt);
  }
#pragma omp parallel for schedule(static) if (rows * dim >= (1 << 16))
  for (int64_t t = 0; t < rows; ++t) {
    const float* xt = x + t * dim;
    const float* gt = dy + t * dim;
    float* o = dx + t * dim;
    for (int64_t i = 0; i < dim; ++i) o[i] = r[size_t(t)] * w[i] * gt[i] - c[size_t(t)] * xt[i];
  }
}

void silu_mul_backward_f32(const float* g, const float* u, const float* dh, int64_t rows, int64_t n, int64_t ld_gu,
                           int64_t ld_h, float* dg, float* du) {
#pragma omp parallel for schedule(static) if (rows * n >= (1 << 16))
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t j = 0; j < n; ++j) {
      const float gv = g[t * ld_gu + j], uv = u[t * ld_gu + j], d = dh[t * ld_h + j];
      const float s = 1.0f / (1.0f + std::exp(-gv));
      dg[t * ld_gu + j] = d * uv * s * (1.0f + gv * (1.0f - s));  // silu'(g) = s (1 + g (1 - s))
      du[t * ld_gu + j] = d * gv * s;
    }
  }
}

void attention_backward_f32(const float* q, int64_t ldq, const float* k, const float* v, int64_t head_stride, int64_t rows,
                            int n_heads, int n_kv, int hd, const float* dout, int64_t ld_do, float* dq, int64_t ld_dq, float* dk,
                            float* dv) {
  const int group = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(float(hd));
#pragma omp parallel if (rows * rows * n_heads * hd >= (1 << 16))
  {
    std::vector<float> p(static_cast<size_t>(rows)), dp(static_cast<size_t>(rows));
#pragma omp for schedule(static)
    for (int g = 0; g < n_kv; ++g) {
      const float* kg = k + int64_t(g) * head_stride;
      const float* vg = v + int64_t(g) * head_stride;
      float* dkg = dk + int64_t(g) * head_stride;
      float* dvg = dv + int64_t(g) * head_stride;
      for (int h = g * group; h < (g + 1) * group; ++h) {
        for (int64_t t = 0; t < rows; ++t) {
          const float* qt = q + t * ldq + int64_t(h) * hd;
          const float* dot = dout + t * ld_do + int64_t(h) * hd;
          // p = softmax(q . k_j * scale) over j <= t
          float mx = -INFINITY;
          for (int64_t j = 0; j <= t; ++j) {
            float d = 0.f;
            for (int i = 0; i < hd; ++i) d += qt[i] * kg[j * hd + i];
            p[size_t(j)] = d * scale;
            mx = std::max(mx, p[size_t(j)]);
          }
          float sum = 0.f;
          for (int64_t j = 0; j <= t; ++j) { p[size_t(j)] = std::exp(p[size_t(j)] - mx); sum += p[size_t(j)]; }
          // dp_j = dout . v_j ; ds_j = p_j (dp_j - sum_k p_k dp_k)
          float pdp = 0.f;
          for (int64_t j = 0; j <= t; ++j) {
            p[size_t(j)] /= sum;
            float d = 0.f;
            for (int i = 0; i < hd; ++i) d += dot[i] * vg[j * hd + i];
            dp[size_t(j)] = d;
            pdp += p[size_t(j)] * d;
          }
          float* dqt = dq + t * ld_dq + int64_t(h) * hd;
          std::fill(dqt, dqt + hd, 0.f);
          for (int64_t j = 0; j <= t; ++j) {
            const float ds = p[size_t(j)] * (dp[size_t(j)] - pdp) * scale;
            for (int i = 0; i < hd; ++i) {
              dqt[i] += ds * kg[j * hd + i];
              dkg[j * hd + i] += ds * qt[i];
              dvg[j * hd + i] += p[size_t(j)] * dot[i];
            }
          }
        }
      }
    }
  }
}

double cross_entropy_f32(const float* logits, const int* targets, int64_t rows, int64_t vocab, float scale, float* dlogits) {
  double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (rows * vocab >= (1 << 16))
  for (int64_t t = 0; t < rows; ++t) {
    const float* l = logits + t * vocab;
    float* d = dlogits + t * vocab;
    const int y = targets[t];
    if (y < 0) {
      std::fill(d, d + vocab, 0.f);
      continue;
    }
    const float mx = *std::max_element(l, l + vocab);
    double sum = 0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(double(l[j] - mx));
    const double lse = double(mx) + std::log(sum);
    total += lse - double(l[y]);
    for (int64_t j = 0; j < vocab; ++j) d[j] = scale * float(std::exp(double(l[j]) - lse));  // reads l[j] before writing d[j]
    d[y] -= scale;
  }
  return total;
}

double kl_divergence_f32(const float* teacher, const float* student, int64_t rows, int64_t vocab, float temperature, float scale,
                         float* dstudent, float* row_kl) {
  const double inv_t = 1.0 / temperature;
  double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (rows * vocab >= (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const float* tl = teacher + r * vocab;
    const float* sl = student + r * vocab;
    // log-softmax of both at temperature T, in float64
    double tmax = -INFINITY, smax = -INFINITY;
    for (int64_t j = 0; j < vocab; ++j) { tmax = std::max(tmax, double(tl[j])); smax = std::max(smax, double(sl[j])); }
    double tz = 0, sz = 0;
    for (int64_t j = 0; j < vocab; ++j) {
      tz += std::exp((double(tl[j]) - tmax) * inv_t);
      sz += std::exp((double(sl[j]) - smax) * inv_t);
    }
    const double tlse = std::log(tz), slse = std::log(sz);
    double kl = 0;
    for (int64_t j = 0; j < vocab; ++j) {
      const double lp = (double(tl[j]) - tmax) * inv_t - tlse, lq = (double(sl[j]) - smax) * inv_t - slse;
      const double p = std::exp(lp), q = std::exp(lq);
      kl += p * (lp - lq);
      if (dstudent) dstudent[r * vocab + j] = float(scale * temperature * (q - p));
    }
    if (row_kl) row_kl[r] = float(kl);
    total += double(temperature) * temperature * kl;
  }
  return total;
}

}  // namespace condense::kernels
