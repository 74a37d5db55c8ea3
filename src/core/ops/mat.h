// Mat: a strided 2-D f32 view (rows x cols, row stride ld) on some device. Ops
// take Mats so that the runtime can address slices of fused buffers (q/k/v,
// gate/up) without copies.
#pragma once
#include <cstdint>
#include <string>

#include "core/device.h"
#include "core/tensor.h"

namespace condense::ops {

struct Mat {
  float* data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  Device device = Device::CPU;

  Mat cols_slice(int64_t c0, int64_t n) const { return {data + c0, rows, n, ld, device}; }
  Mat rows_slice(int64_t r0, int64_t n) const { return {data + r0 * ld, n, cols, ld, device}; }
  float* row(int64_t r) const { return data + r * ld; }
  bool contiguous() const { return ld == cols; }
};

// A view of a 2-D f32 tensor (or a 1-D one as a single row).
Mat mat(Tensor& t);
// Throws condense::Error "<op>: <what>" when `ok` is false (shape mismatches).
void check(bool ok, const char* op, const std::string& what);
// The same for a literal message: nothing is built unless it fails (ops run per token).
inline void check(bool ok, const char* op, const char* what) {
  if (!ok) check(false, op, std::string(what));
}

}  // namespace condense::ops
