// ByteArena: 64-byte-aligned byte buffers carved, in the order asked for, from
// a few large regions backed by transparent huge pages. The runtime packs every
// weight through one arena so that a decode step streams its weights from
// 2 MiB pages in use order: a matrix of a few MB allocated alone sits on 4 KiB
// pages, and one core streaming it then loses ~20% of its read bandwidth to TLB
// walks and prefetch stops at every page (bench/README.md "Native runtime").
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace condense {

class ByteArena {
 public:
  explicit ByteArena(size_t region_bytes = size_t(64) << 20) : region_bytes_(region_bytes) {}
  // n zeroed bytes (an I8 tensor sharing the region; n = 0 gives 1 byte).
  Tensor zeroed(int64_t n);
  // Bytes of regions reserved (a region is only resident where written).
  size_t reserved_bytes() const;

 private:
  size_t region_bytes_;
  std::vector<Tensor> regions_;
  size_t used_ = 0;  // bytes handed out of regions_.back()
};

}  // namespace condense
