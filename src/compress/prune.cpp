#include "compress/prune.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "compress/gptq.h"
#include "core/error.h"

namespace condense::compress {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace {

// Removes the `remove` lowest-scoring of `idx` (already-removed first).
void remove_lowest(std::vector<int64_t>& idx, int64_t remove, const std::vector<float>& score, const std::vector<uint64_t>& existing,
                   std::vector<uint64_t>& mask) {
  auto key = [&](int64_t i) { return mask_kept(existing, i) ? score[size_t(i)] : -std::numeric_limits<float>::infinity(); };
  int64_t gone = 0;
  for (int64_t i : idx) gone += !mask_kept(existing, i);
  remove = std::min<int64_t>(std::max(remove, gone), int64_t(idx.size()));
  if (remove == 0) return;
  auto less = [&](int64_t a, int64_t b) {
    const float ka = key(a), kb = key(b);
    return ka < kb || (ka == kb && a > b);
  };
  std::nth_element(idx.begin(), idx.begin() + (remove - 1), idx.end(), less);
  for (int64_t k = 0; k < remove; ++k) mask_remove(mask, idx[size_t(k)]);
}

void check_nm(const NmPattern& nm, int64_t cols, const char* where) {
  if (!nm.active()) return;
  if (nm.n < 0 || nm.n > nm.m) fail(where, "an N:M pattern needs 0 <= n <= m, got " + std::to_string(nm.n) + ":" + std::to_string(nm.m));
  if (cols % nm.m) {
    fail(where, "rows of " + std::to_string(cols) + " inputs do not split into groups of " + std::to_string(nm.m),
         "Use unstructured sparsity for this weight or exclude it from the targets");
  }
}

}  // namespace

std::vector<uint64_t> select_mask(const std::vector<float>& score, int64_t rows, int64_t cols, double sparsity, Compare cmp,
                                  const NmPattern& nm, const std::vector<uint64_t>& existing) {
  const int64_t n = rows * cols;
  if (int64_t(score.size()) != n) fail("prune", "score and weight sizes differ");
  if (!(sparsity >= 0 && sparsity <= 1)) fail("prune", "sparsity must be in [0, 1], got " + std::to_string(sparsity));
  check_nm(nm, cols, "prune");
  std::vector<uint64_t> mask = keep_all(n);
  std::vector<int64_t> idx;
  auto group = [&](int64_t first, int64_t count, int64_t stride, int64_t remove) {
    idx.resize(size_t(count));
    for (int64_t k = 0; k < count; ++k) idx[size_t(k)] = first + k * stride;
    remove_lowest(idx, remove, score, existing, mask);
  };
  if (nm.active()) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; c += nm.m) group(r * cols + c, nm.m, 1, nm.m - nm.n);
    }
  } else if (cmp == Compare::Row) {
    for (int64_t r = 0; r < rows; ++r) group(r * cols, cols, 1, std::llround(sparsity * double(cols)));
  } else {
    group(0, n, 1, std::llround(sparsity * double(n)));
  }
  return mask;
}

std::vector<float> magnitude_scores(const float* w, int64_t n) {
  std::vector<float> s(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) s[size_t(i)] = std::fabs(w[i]);
  return s;
}

std::vector<float> wanda_scores(const float* w, int64_t rows, int64_t cols, const std::vector<double>& hessian) {
  if (int64_t(hessian.size()) != cols * cols) fail("Wanda", "the input statistics are not [cols, cols]");
  std::vector<float> norm(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) norm[size_t(j)] = float(std::sqrt(std::max(0.0, hessian[size_t(j * cols + j)])));
  std::vector<float> s(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) s[size_t(r * cols + c)] = std::fabs(w[r * cols + c]) * norm[size_t(c)];
  }
  return s;
}

std::vector<uint64_t> sparsegpt_prune(float* w, int64_t rows, int64_t cols, const std::vector<double>& hessian, double sparsity,
                                      const NmPattern& nm, const SparseGptOptions& opt, const std::vector<uint64_t>& existing,
                                      SparseGptReport* report) {
  if (int64_t(hessian.size()) != cols * cols) fail("SparseGPT", "the Hessian is not [cols, cols]");
  if (!(sparsity >= 0 && sparsity <= 1)) fail("SparseGPT", "sparsity must be in [0, 1], got " + std::to_string(sparsity));
  check_nm(nm, cols, "SparseGPT");
  MatD W(rows, cols);
  std::vector<double> h = hessian;
  for (int64_t j = 0; j < cols; ++j) {
    const bool dead = hessian[size_t(j * cols + j)] == 0;  // never active: its weights cannot matter
    for (int64_t r = 0; r < rows; ++r) W(r, j) = dead ? 0.0 : double(w[r * cols + j]);
  }
  GptqReport g;
  inverse_hessian_cholesky(h, cols, opt.damp, g);
  Eigen::Map<const MatD> U(h.data(), cols, cols);

  std::vector<uint64_t> mask = keep_all(rows * cols);
  // a block holds whole N:M groups
  const int64_t block = nm.active() ? std::max<int64_t>(nm.m, (std::max(1, opt.block) / nm.m) * nm.m) : std::max(1, opt.block);
  MatD err(rows, block);
  std::vector<float> score;
  std::vector<uint64_t> sub_existing, sub_mask;
  auto score_of = [&](int64_t r, int64_t c) { return float(W(r, c) * W(r, c) / (U(c, c) * U(c, c))); };
  for (int64_t i1 = 0; i1 < cols; i1 += block) {
    const int64_t i2 = std::min(cols, i1 + block), nb = i2 - i1;
    if (!nm.active()) {
      // one threshold over the block's rows x columns, as the reference does
      score.assign(size_t(rows * nb), 0.f);
      sub_existing = keep_all(rows * nb);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < nb; ++c) {
          score[size_t(r * nb + c)] = score_of(r, i1 + c);
          if (!mask_kept(existing, r * cols + i1 + c)) mask_remove(sub_existing, r * nb + c);
        }
      }
      sub_mask = select_mask(score, rows, nb, sparsity, Compare::Matrix, {}, sub_existing);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < nb; ++c) {
          if (!mask_kept(sub_mask, r * nb + c)) mask_remove(mask, r * cols + i1 + c);
        }
      }
    }
    for (int64_t i = i1; i < i2; ++i) {
      if (nm.active() && i % nm.m == 0) {
        // this group's mask from the weights as the earlier columns left them
        score.assign(size_t(rows * nm.m), 0.f);
        sub_existing = keep_all(rows * nm.m);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < nm.m; ++c) {
            score[size_t(r * nm.m + c)] = score_of(r, i + c);
            if (!mask_kept(existing, r * cols + i + c)) mask_remove(sub_existing, r * nm.m + c);
          }
        }
        sub_mask = select_mask(score, rows, nm.m, 0, Compare::Row, nm, sub_existing);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < nm.m; ++c) {
            if (!mask_kept(sub_mask, r * nm.m + c)) mask_remove(mask, r * cols + i + c);
          }
        }
      }
      const double d = U(i, i);
      for (int64_t r = 0; r < rows; ++r) {
        const double wv = W(r, i), q = mask_kept(mask, r * cols + i) ? wv : 0.0;
        W(r, i) = q;
        err(r, i - i1) = (wv - q) / d;
      }
      if (i + 1 < i2) W.block(0, i + 1, rows, i2 - i - 1).noalias() -= err.col(i - i1) * U.block(i, i + 1, 1, i2 - i - 1);
    }
    if (i2 < cols) W.block(0, i2, rows, cols - i2).noalias() -= err.leftCols(nb) * U.block(i1, i2, nb, cols - i2);
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) w[r * cols + c] = mask_kept(mask, r * cols + c) ? float(W(r, c)) : 0.f;
  }
  if (report) *report = {g.damp_used, g.retries};
  return mask;
}

void apply_mask(float* w, int64_t n, const std::vector<uint64_t>& mask) {
  if (mask.empty()) return;
  for (int64_t i = 0; i < n; ++i) {
    if (!mask_kept(mask, i)) w[i] = 0.f;
  }
}

}  // namespace condense::compress
