// PackedLinear: one or more weight matrices [n_i, k] (f32, "out x in") packed
// once, row-concatenated, into the layout the linear kernels stream. Fusing q/k/v
// or gate/up into one pack makes one pass over x and one thread fork instead of three.
#pragma once
#include <vector>

#include "core/ops/mat.h"
#include "core/tensor.h"

namespace condense::ops {

class PackedLinear {
 public:
  PackedLinear() = default;
  static PackedLinear pack(const std::vector<const Tensor*>& parts);
  int64_t out_features() const { return n_; }
  int64_t in_features() const { return k_; }
  // Bytes of weights a pass reads (what decode speed is bound by).
  size_t weight_bytes() const { return size_t(n_ * k_) * sizeof(float); }

  // y[m, n] = x[m, k] . W^T. y must not overlap x.
  void apply(const Mat& x, const Mat& y) const;

 private:
  Tensor packed_;
  int64_t n_ = 0, k_ = 0;
};

}  // namespace condense::ops
