#include "compress/gptq.h"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <numeric>

#include "compress/rtn.h"
#include "core/error.h"

namespace condense::compress {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void inverse_hessian_cholesky(std::vector<double>& h, int64_t n, double damp, GptqReport& report) {
  Eigen::Map<MatD> H(h.data(), n, n);
  for (int64_t i = 0; i < n; ++i) {
    if (H(i, i) == 0) H(i, i) = 1;
  }
  const double mean_diag = H.diagonal().cwiseAbs().mean();  // |.|: an indefinite H may have a negative mean
  for (double d = damp;; d *= 10) {
    MatD a = H;
    a.diagonal().array() += d * mean_diag;
    Eigen::LLT<MatD> llt(a);
    if (llt.info() == Eigen::Success) {
      MatD inv = llt.solve(MatD::Identity(n, n));
      Eigen::LLT<MatD> l2(inv);
      if (l2.info() == Eigen::Success) {
        H = l2.matrixU();
        report.damp_used = d;
        return;
      }
    }
    ++report.retries;
    if (d >= std::max(damp, 1e-8) * 1e6) {
      fail("GPTQ", "the Hessian is not positive definite even with dampening " + std::to_string(d),
           "Use more calibration samples or a larger damp");
    }
    if (d == 0) d = 1e-3;
  }
}

WeightCompression gptq_quantize(const QuantScheme& s, float* w, int64_t rows, int64_t cols, const std::vector<double>& hessian,
                                const GptqOptions& opt, const std::vector<uint64_t>& mask, GptqReport* report) {
  validate_scheme(s, "GPTQ");
  if (int64_t(hessian.size()) != cols * cols) fail("GPTQ", "the Hessian is not [cols, cols]");
  GptqReport rep;
  WeightCompression wc = WeightCompression::blank(s, rows, cols, mask);

  // permuted copies: column i of W / H is original column perm[i]
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  if (opt.act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return hessian[size_t(a * cols + a)] > hessian[size_t(b * cols + b)]; });
  }
  MatD W(rows, cols);
  std::vector<double> h(size_t(cols * cols));
  for (int64_t i = 0; i < cols; ++i) {
    const int64_t j = perm[size_t(i)];
    const bool dead = hessian[size_t(j * cols + j)] == 0;
    rep.dead_columns += dead;
    for (int64_t r = 0; r < rows; ++r) W(r, i) = dead ? 0.0 : double(w[r * cols + j]);
    for (int64_t k = 0; k < cols; ++k) h[size_t(i * cols + k)] = hessian[size_t(j * cols + perm[size_t(k)])];
  }
  inverse_hessian_cholesky(h, cols, opt.damp, rep);
  Eigen::Map<const MatD> U(h.data(), cols, cols);

  // Scales fixed up front (per-tensor, per-channel, and groups under act_order,
  // whose columns are not visited together) come from the original weights.
  const bool lazy_groups = s.granularity == Granularity::Group && !opt.act_order;
  if (!lazy_groups) {
    const WeightCompression init = quantize_rtn(s, w, rows, cols, mask);
    wc.scales = init.scales;
    wc.zeros = init.zeros;
  }
  std::vector<float> tmp(static_cast<size_t>(std::max<int64_t>(s.group, 1)));
  const int64_t block = std::max(1, opt.block);
  MatD err(rows, block);
  for (int64_t i1 = 0; i1 < cols; i1 += block) {
    const int64_t i2 = std::min(cols, i1 + block), nb = i2 - i1;
    for (int64_t i = i1; i < i2; ++i) {
      const int64_t j = perm[size_t(i)];
      if (lazy_groups && j % s.group == 0) {
        // this group's scales from the current (error-updated) weights; without
        // act_order, permuted and original columns coincide
        const int64_t c1 = std::min(cols, j + s.group);
        for (int64_t r = 0; r < rows; ++r) {
          int64_t n = 0;
          for (int64_t c = j; c < c1; ++c) {
            if (wc.kept(r * cols + c)) tmp[size_t(n++)] = float(W(r, c));
          }
          const GroupParams p = choose_params(s, tmp.data(), n);
          const int64_t si = s.scale_index(r, j, cols);
          wc.scales[size_t(si)] = p.scale;
          if (!s.symmetric) wc.zeros[size_t(si)] = p.zero;
        }
      }
      const double d = U(i, i);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t e = r * cols + j, si = s.scale_index(r, j, cols);
        const double wv = W(r, i);
        double q = 0;
        if (wc.kept(e)) {
          const uint8_t zero = s.symmetric ? 0 : wc.zeros[size_t(si)];
          const uint8_t code = quant_value(s, float(wv), wc.scales[size_t(si)], zero);
          wc.codes[size_t(e)] = code;
          q = dequant_code(s, code, wc.scales[size_t(si)], zero);
        }
        err(r, i - i1) = (wv - q) / d;
      }
      if (i + 1 < i2) W.block(0, i + 1, rows, i2 - i - 1).noalias() -= err.col(i - i1) * U.block(i, i + 1, 1, i2 - i - 1);
    }
    if (i2 < cols) W.block(0, i2, rows, cols - i2).noalias() -= err.leftCols(nb) * U.block(i1, i2, nb, cols - i2);
  }
  dequantize(wc, rows, cols, w);
  if (report) *report = rep;
  return wc;
}

}  // namespace condense::compress
