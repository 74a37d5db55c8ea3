#include "core/byte_arena.h"

#include <algorithm>
#include <cstring>

namespace condense {

Tensor ByteArena::zeroed(int64_t n) {
  const size_t want = size_t(std::max<int64_t>(n, 1)), padded = (want + 63) / 64 * 64;
  if (regions_.empty() || used_ + padded > regions_.back().nbytes()) {
    // A request larger than a region gets one of its own size; the rest of the
    // old region stays unused (untouched, so never resident).
    regions_.push_back(Tensor::empty(DType::I8, {int64_t(std::max(region_bytes_, padded))}));
    used_ = 0;
  }
  Tensor t = Tensor::slice_bytes(regions_.back(), used_, int64_t(want));
  std::memset(t.data(), 0, want);
  used_ += padded;
  return t;
}

size_t ByteArena::reserved_bytes() const {
  size_t b = 0;
  for (const Tensor& r : regions_) b += r.nbytes();
  return b;
}

}  // namespace condense
