#include "core/ops/mat.h"

#include "core/error.h"

namespace condense::ops {

Mat mat(Tensor& t) {
  if (t.ndim() == 1) return {t.f32(), 1, t.dim(0), t.dim(0), t.device()};
  check(t.ndim() == 2, "mat", "expected a 1-D or 2-D tensor, got " + shape_str(t.shape()));
  return {t.f32(), t.dim(0), t.dim(1), t.dim(1), t.device()};
}

void check(bool ok, const char* op, const std::string& what) {
  if (!ok) throw Error(std::string(op) + ": " + what);
}

}  // namespace condense::ops
