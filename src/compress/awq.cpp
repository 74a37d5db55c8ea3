#include "compress/awq.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "compress/rtn.h"
#include "core/error.h"

namespace condense::compress {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

double output_error(const float* w, const float* v, int64_t rows, int64_t cols, const std::vector<double>& h) {
  MatD e(rows, cols);
  for (int64_t i = 0; i < rows * cols; ++i) e.data()[i] = double(w[i]) - double(v[i]);
  Eigen::Map<const MatD> H(h.data(), cols, cols);
  return (e * H).cwiseProduct(e).sum();
}

AwqSearch awq_search(const QuantScheme& s, const std::vector<AwqWeight>& weights, int64_t cols, const std::vector<double>& h,
                     const std::vector<double>& abs_mean, const AwqOptions& opt) {
  AwqSearch best;
  best.loss = INFINITY;
  std::vector<float> scaled, deq, sc(static_cast<size_t>(cols));
  for (int k = 0; k <= opt.grid; ++k) {
    const double alpha = double(k) / opt.grid;
    double mx = 0, mn = INFINITY;
    for (int64_t j = 0; j < cols; ++j) {
      const double v = std::pow(std::max(abs_mean[size_t(j)], 1e-4), alpha);
      sc[size_t(j)] = float(v);
      mx = std::max(mx, v);
      mn = std::min(mn, v);
    }
    const double norm = std::sqrt(mx * mn);  // keeps the scales centred around 1
    for (float& v : sc) v = float(double(v) / norm);
    double loss = 0;
    for (const AwqWeight& aw : weights) {
      const int64_t n = aw.rows * cols;
      scaled.resize(size_t(n));
      deq.resize(size_t(n));
      for (int64_t r = 0; r < aw.rows; ++r) {
        for (int64_t j = 0; j < cols; ++j) scaled[size_t(r * cols + j)] = aw.w[r * cols + j] * sc[size_t(j)];
      }
      quantize_rtn(s, scaled.data(), aw.rows, cols, aw.mask ? *aw.mask : std::vector<uint64_t>{}, deq.data());
      for (int64_t r = 0; r < aw.rows; ++r) {
        for (int64_t j = 0; j < cols; ++j) deq[size_t(r * cols + j)] /= sc[size_t(j)];
      }
      loss += output_error(aw.w, deq.data(), aw.rows, cols, h);
    }
    if (k == 0) best.loss_unscaled = loss;  // alpha 0: all scales 1, plain RTN
    if (loss < best.loss) {
      best.loss = loss;
      best.alpha = alpha;
      best.scales = sc;
    }
  }
  return best;
}

WeightCompression quantize_clip_search(const QuantScheme& s, float* w, int64_t rows, int64_t cols, const std::vector<double>& h,
                                       const AwqOptions& opt, const std::vector<uint64_t>& mask) {
  WeightCompression wc = quantize_rtn(s, w, rows, cols, mask);
  if (!opt.clip || s.granularity == Granularity::PerTensor) {
    dequantize(wc, rows, cols, w);
    return wc;
  }
  const int64_t g = s.granularity == Granularity::Group ? s.group : cols, gpr = s.groups_per_row(cols);
  const int steps = std::max(1, int(opt.max_shrink * opt.clip_grid));
  std::vector<double> e(static_cast<size_t>(g));
  std::vector<uint8_t> codes(static_cast<size_t>(g));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < gpr; ++k) {
      const int64_t c0 = k * g, c1 = std::min(cols, c0 + g), n = c1 - c0;
      float lo = 0, hi = 0;
      for (int64_t c = c0; c < c1; ++c) {
        if (!wc.kept(r * cols + c)) continue;
        lo = std::min(lo, w[r * cols + c]);
        hi = std::max(hi, w[r * cols + c]);
      }
      double best = INFINITY;
      GroupParams best_p;
      for (int i = 0; i < steps; ++i) {
        const float ratio = 1.f - float(i) / float(opt.clip_grid);
        const GroupParams p = choose_params_range(s, lo * ratio, hi * ratio);
        for (int64_t c = c0; c < c1; ++c) {
          const int64_t idx = r * cols + c;
          const bool kept = wc.kept(idx);
          codes[size_t(c - c0)] = kept ? quant_value(s, w[idx], p.scale, p.zero) : 0;
          e[size_t(c - c0)] = kept ? double(w[idx]) - double(dequant_code(s, codes[size_t(c - c0)], p.scale, p.zero)) : 0.0;
        }
        double err = 0;
        for (int64_t a = 0; a < n; ++a) {
          if (e[size_t(a)] == 0) continue;
          const double* hr = h.data() + (c0 + a) * cols + c0;
          double t = 0;
          for (int64_t b = 0; b < n; ++b) t += hr[b] * e[size_t(b)];
          err += e[size_t(a)] * t;
        }
        if (err < best) {
          best = err;
          best_p = p;
          for (int64_t c = c0; c < c1; ++c) wc.codes[size_t(r * cols + c)] = codes[size_t(c - c0)];
        }
      }
      const int64_t si = s.scale_index(r, c0, cols);
      wc.scales[size_t(si)] = best_p.scale;
      if (!s.symmetric) wc.zeros[size_t(si)] = best_p.zero;
    }
  }
  dequantize(wc, rows, cols, w);
  return wc;
}

}  // namespace condense::compress
