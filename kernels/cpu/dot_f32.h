// The f32 dot product every row-wise kernel shares (RMSNorm, the attention row
// paths), so that paths over different storage reduce in the same order.
// Only included by kernels/cpu/*.cpp.
#pragma once
#include <cstdint>

namespace condense::kernels {

// 16 independent partial sums: a plain `d += a[i] * b[i]` loop is one dependent
// chain the compiler may not reorder (no -ffast-math), so it would run scalar;
// this form vectorizes on every ISA.
inline float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float d = 0.f;
  for (; i < n; ++i) d += a[i] * b[i];
  if (n < 16) return d;  // the partial sums are all +0: adding them changes nothing
  // The 16 partial sums folded in halves (a fixed tree: a few vector adds, not a
  // 16-long dependent chain per dot), then the tail's sum.
  for (int w = 8; w > 0; w /= 2) {
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  }
  return acc[0] + d;
}

}  // namespace condense::kernels
