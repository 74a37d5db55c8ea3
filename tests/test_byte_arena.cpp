// ByteArena and Tensor::slice_bytes: the buffers the engine packs weights into.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "core/byte_arena.h"
#include "core/error.h"
#include "core/tensor.h"

using namespace condense;

TEST(ByteArena, HandsOutZeroedAlignedDisjointBuffers) {
  ByteArena arena(size_t(1) << 20);
  std::vector<Tensor> got;
  std::vector<std::pair<uintptr_t, uintptr_t>> spans;
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(63), int64_t(64), int64_t(65), int64_t(300000), int64_t(700000), int64_t(3) << 20, int64_t(5)}) {
    Tensor t = arena.zeroed(n);
    ASSERT_EQ(t.dtype(), DType::I8);
    ASSERT_EQ(t.numel(), std::max<int64_t>(n, 1));
    const auto* p = static_cast<const uint8_t*>(t.data());
    ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << n;
    for (int64_t i = 0; i < t.numel(); ++i) ASSERT_EQ(p[i], 0) << n;
    std::memset(t.data(), 0xAB, size_t(t.numel()));  // must not reach any other buffer
    spans.push_back({reinterpret_cast<uintptr_t>(p), reinterpret_cast<uintptr_t>(p) + size_t(t.numel())});
    got.push_back(t);
  }
  for (size_t i = 0; i < spans.size(); ++i) {
    for (size_t j = i + 1; j < spans.size(); ++j) {
      ASSERT_TRUE(spans[i].second <= spans[j].first || spans[j].second <= spans[i].first) << i << " overlaps " << j;
    }
  }
  // 1 MiB regions; the 3 MiB request got one of its own size.
  EXPECT_GE(arena.reserved_bytes(), size_t(4) << 20);
}

TEST(ByteArena, BuffersOutliveTheArena) {
  Tensor t;
  {
    ByteArena arena;
    t = arena.zeroed(1000);
    std::memset(t.data(), 7, 1000);
  }
  EXPECT_EQ(static_cast<const uint8_t*>(t.data())[999], 7);
}

TEST(TensorSlice, SharesStorageAndRefusesBadSpans) {
  Tensor base = Tensor::zeros(DType::I8, {256});
  Tensor s = Tensor::slice_bytes(base, 64, 100);
  static_cast<uint8_t*>(s.data())[0] = 9;
  EXPECT_EQ(static_cast<const uint8_t*>(base.data())[64], 9);
  EXPECT_THROW(Tensor::slice_bytes(base, 32, 10), Error);    // not 64-aligned
  EXPECT_THROW(Tensor::slice_bytes(base, 192, 100), Error);  // past the end
  EXPECT_THROW(Tensor::slice_bytes(base, 0, -1), Error);
}
