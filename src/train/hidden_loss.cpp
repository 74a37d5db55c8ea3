#include "train/hidden_loss.h"

#include <algorithm>

#include "core/error.h"
#include "core/ops/gemm.h"

namespace condense::train {

double hidden_mse(const ops::Mat& xs, const ops::Mat& xt, Tensor* proj, float beta, float scale, const ops::Mat* dxs,
                  Tensor* d_proj) {
  const int64_t rows = xs.rows, dt = xt.cols;
  if (xt.rows != rows) fail("hidden_mse", "student and teacher row counts differ");
  if (proj && (proj->dim(0) != dt || proj->dim(1) != xs.cols)) {
    fail("hidden_mse", "projection is " + shape_str(proj->shape()) + ", needs [" + std::to_string(dt) + ", " +
                           std::to_string(xs.cols) + "]");
  }
  if (!proj && xs.cols != dt) {
    fail("hidden_mse", "student width " + std::to_string(xs.cols) + " differs from teacher width " + std::to_string(dt),
         "Use a learned projection");
  }
  Tensor r_t = Tensor::empty(DType::F32, {rows, dt});
  ops::Mat r = ops::mat(r_t);
  if (proj) {
    ops::matmul(xs, false, ops::mat(*proj), true, r);
  } else {
    for (int64_t i = 0; i < rows; ++i) std::copy_n(xs.row(i), dt, r.row(i));
  }
  double sum = 0;
  for (int64_t i = 0; i < rows; ++i) {
    float* ri = r.row(i);
    const float* ti = xt.row(i);
    for (int64_t j = 0; j < dt; ++j) {
      ri[j] -= ti[j];
      sum += double(ri[j]) * ri[j];
    }
  }
  const double n = double(rows) * double(dt);
  if (dxs) {
    const float g = float(2.0 * beta * scale / n);
    if (proj) {
      if (d_proj) ops::matmul(r, true, xs, false, ops::mat(*d_proj), g, 1.f);
      ops::matmul(r, false, ops::mat(*proj), false, *dxs, g, 1.f);
    } else {
      for (int64_t i = 0; i < rows; ++i) {
        float* d = dxs->row(i);
        const float* ri = r.row(i);
        for (int64_t j = 0; j < dt; ++j) d[j] += g * ri[j];
      }
    }
  }
  return beta * sum / n;
}

}  // namespace condense::train
