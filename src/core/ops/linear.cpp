#include "core/ops/linear.h"

#include <cstring>

#include "kernels/cpu/linear_f32.h"

namespace condense::ops {

PackedLinear PackedLinear::pack(const std::vector<const Tensor*>& parts) {
  PackedLinear p;
  check(!parts.empty(), "PackedLinear::pack", "no weights given");
  p.k_ = parts[0]->dim(1);
  for (const Tensor* t : parts) {
    check(t->ndim() == 2 && t->dim(1) == p.k_, "PackedLinear::pack",
          "weights to fuse must be 2-D with equal input width, got " + shape_str(t->shape()));
    p.n_ += t->dim(0);
  }
  p.packed_ = Tensor::empty(DType::F32, {kernels::packed_f32_size(p.n_, p.k_)});
  std::memset(p.packed_.data(), 0, p.packed_.nbytes());
  int64_t row0 = 0;
  for (const Tensor* t : parts) {
    kernels::pack_f32_rows(t->f32(), t->dim(0), p.k_, row0, p.packed_.f32());
    row0 += t->dim(0);
  }
  return p;
}

void PackedLinear::apply(const Mat& x, const Mat& y) const {
  check(x.cols == k_ && y.cols == n_ && x.rows == y.rows, "linear",
        "x [" + std::to_string(x.rows) + ", " + std::to_string(x.cols) + "] . W^T [" + std::to_string(k_) + ", " +
            std::to_string(n_) + "] -> y [" + std::to_string(y.rows) + ", " + std::to_string(y.cols) + "] do not match");
  kernels::linear_f32(x.data, x.rows, k_, x.ld, packed_.f32(), n_, y.data, y.ld);
}

}  // namespace condense::ops
