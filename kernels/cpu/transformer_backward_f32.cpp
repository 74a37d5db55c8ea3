#include "kernels/cpu/transformer_backward_f32.h"

#include "kernels/cpu/gemm_f32.h"
#include "kernels/cpu/vexp_f32.h"
#include "kernels/cpu/parallel.h"

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
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelElems)
  for (int64_t t = 0; t < rows; ++t) {
    const float* xt = x + t * dim;
    const float* gt = dy + t * dim;
    float* o = dx + t * dim;
    for (int64_t i = 0; i < dim; ++i) o[i] = r[size_t(t)] * w[i] * gt[i] - c[size_t(t)] * xt[i];
  }
}

void silu_mul_backward_f32(const float* g, const float* u, const float* dh, int64_t rows, int64_t n, int64_t ld_gu,
                           int64_t ld_h, float* dg, float* du) {
#pragma omp parallel if (rows * n >= kParallelElems)
  {
    std::vector<float> e(static_cast<size_t>(n));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < rows; ++t) {
      exp_shift_f32(g + t * ld_gu, 0.f, -1.f, n, e.data());  // vectorised exp(-g), as the forward
      for (int64_t j = 0; j < n; ++j) {
        const float gv = g[t * ld_gu + j], uv = u[t * ld_gu + j], d = dh[t * ld_h + j];
        const float s = 1.0f / (1.0f + e[size_t(j)]);
        dg[t * ld_gu + j] = d * uv * s * (1.0f + gv * (1.0f - s));  // silu'(g) = s (1 + g (1 - s))
        du[t * ld_gu + j] = d * gv * s;
      }
    }
  }
}

void attention_backward_f32(const float* q, int64_t ldq, const float* k, const float* v, int64_t head_stride, int64_t rows,
                            int n_heads, int n_kv, int hd, const float* dout, int64_t ld_do, float* dq, int64_t ld_dq, float* dk,
                            float* dv) {
  // Per head, in blocks of kRb query rows [r0, r1) against keys [0, r1) (the
  // causal triangle in rectangles), every product is one gemm_f32 call:
  //   S = scale Q K^T, P = softmax(S) (recomputed), dP = dO V^T,
  //   dS = P (dP - rowsum(P dP)) scale, dQ = dS K, dK += dS^T Q, dV += P^T dO.
  // Work is split by kv head, so dK/dV need no atomics and the result does not
  // depend on the thread count (gemm calls inside run on the calling thread).
  constexpr int64_t kRb = 64;
  const int group = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(float(hd));
#pragma omp parallel if (rows * rows * n_heads * hd >= kParallelMacs)
  {
    std::vector<float> p(static_cast<size_t>(std::min(kRb, rows) * rows)), dp(p.size());
#pragma omp for schedule(static)
    for (int g = 0; g < n_kv; ++g) {
      const float* kg = k + int64_t(g) * head_stride;
      const float* vg = v + int64_t(g) * head_stride;
      float* dkg = dk + int64_t(g) * head_stride;
      float* dvg = dv + int64_t(g) * head_stride;
      for (int h = g * group; h < (g + 1) * group; ++h) {
        for (int64_t r0 = 0; r0 < rows; r0 += kRb) {
          const int64_t nr = std::min(kRb, rows - r0), nc = r0 + nr;  // rows of the block, keys it sees
          const float* qh = q + r0 * ldq + int64_t(h) * hd;
          const float* doh = dout + r0 * ld_do + int64_t(h) * hd;
          gemm_f32(nr, nc, hd, scale, qh, ldq, 1, kg, 1, hd, 0.f, p.data(), nc);
          gemm_f32(nr, nc, hd, 1.f, doh, ld_do, 1, vg, 1, hd, 0.f, dp.data(), nc);
          for (int64_t t = 0; t < nr; ++t) {
            float* pt = p.data() + t * nc;
            float* dpt = dp.data() + t * nc;
            const int64_t n_vis = r0 + t + 1;
            float mx = -INFINITY;
            for (int64_t j = 0; j < n_vis; ++j) mx = std::max(mx, pt[j]);
            const float inv = float(1.0 / exp_shift_f32(pt, mx, 1.f, n_vis, pt));
            float pdp = 0.f;
            for (int64_t j = 0; j < n_vis; ++j) {
              pt[j] *= inv;
              pdp += pt[j] * dpt[j];
            }
            for (int64_t j = 0; j < n_vis; ++j) dpt[j] = pt[j] * (dpt[j] - pdp) * scale;
            for (int64_t j = n_vis; j < nc; ++j) pt[j] = dpt[j] = 0.f;  // masked: no gradient
          }
          gemm_f32(nr, hd, nc, 1.f, dp.data(), nc, 1, kg, hd, 1, 0.f, dq + r0 * ld_dq + int64_t(h) * hd, ld_dq);
          gemm_f32(nc, hd, nr, 1.f, dp.data(), 1, nc, qh, ldq, 1, 1.f, dkg, hd);
          gemm_f32(nc, hd, nr, 1.f, p.data(), 1, nc, doh, ld_do, 1, 1.f, dvg, hd);
        }
      }
    }
  }
}

double cross_entropy_f32(const float* logits, const int* targets, int64_t rows, int64_t vocab, float scale, float* dlogits) {
  // One f32 exp per logit, stored in dlogits and rescaled (exp dominates this
  // kernel); the normaliser and the loss are summed in float64.
  double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (rows * vocab >= kParallelElems)
  for (int64_t t = 0; t < rows; ++t) {
    const float* l = logits + t * vocab;
    float* d = dlogits + t * vocab;
    const int y = targets[t];
    if (y < 0) {
      std::fill(d, d + vocab, 0.f);
      continue;
    }
    const float ly = l[y];
    const float mx = *std::max_element(l, l + vocab);
    const double sum = exp_shift_f32(l, mx, 1.f, vocab, d);  // d may alias l: each lane is read before it is written
    total += double(mx) + std::log(sum) - double(ly);
    const float inv = float(scale / sum);
    for (int64_t j = 0; j < vocab; ++j) d[j] *= inv;
    d[y] -= scale;
  }
  return total;
}

double kl_divergence_f32(const float* teacher, const float* student, int64_t rows, int64_t vocab, float temperature, float scale,
                         float* dstudent, float* row_kl) {
  // Two f32 exps per logit pair, kept in per-thread rows; normalisers, the KL
  // sum and log-probabilities in float64.
  const float inv_t = 1.0f / temperature;
  double total = 0;
#pragma omp parallel reduction(+ : total) if (rows * vocab >= kParallelElems)
  {
    std::vector<float> et(static_cast<size_t>(vocab)), es(static_cast<size_t>(vocab));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* tl = teacher + r * vocab;
      const float* sl = student + r * vocab;
      const float tmax = *std::max_element(tl, tl + vocab), smax = *std::max_element(sl, sl + vocab);
      const double tz = exp_shift_f32(tl, tmax, inv_t, vocab, et.data());
      const double sz = exp_shift_f32(sl, smax, inv_t, vocab, es.data());
      // KL = sum p (lp - lq), lp - lq = ((t - tmax) - (s - smax)) / T - log tz + log sz
      const double c = std::log(sz) - std::log(tz);
      double kl = 0;
      for (int64_t j = 0; j < vocab; ++j) {
        kl += double(et[size_t(j)]) * (double((tl[j] - tmax) - (sl[j] - smax)) * inv_t + c);
      }
      kl /= tz;
      if (dstudent) {
        const float gq = float(scale * temperature / sz), gp = float(scale * temperature / tz);
        float* d = dstudent + r * vocab;
        for (int64_t j = 0; j < vocab; ++j) d[j] = gq * es[size_t(j)] - gp * et[size_t(j)];
      }
      if (row_kl) row_kl[r] = float(kl);
      total += double(temperature) * temperature * kl;
    }
  }
  return total;
}

}  // namespace condense::kernels
