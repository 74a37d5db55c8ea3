// The integer-activation path of linear_q (layouts with a8 or a16 set); kernels only.
#pragma once
#include <cstdint>

#include "kernels/cpu/qlinear.h"

namespace condense::kernels {

void linear_a8(const float* x, int64_t m, int64_t ldx, const QMatrix& w, float* y, int64_t ldy);

// a16 pair order (qlinear.h): the byte holding panel row j's code at padded
// position pos, counted from the panel's first code byte, and (int4) the
// shift of its nibble.
inline int64_t a16_byte(const QLayout& L, int j, int64_t pos, int* shift) {
  const int64_t h = j / 16, i = j % 16;
  if (L.code == WCode::I4) {
    const int64_t in = pos % 8;
    *shift = in % 4 < 2 ? 0 : 4;
    return (pos / 8) * 128 + (2 * (in / 4) + h) * 32 + 2 * i + in % 2;
  }
  const int64_t in = pos % 4;
  *shift = 0;
  return (pos / 4) * 128 + (2 * (in / 2) + h) * 32 + 2 * i + in % 2;
}

}  // namespace condense::kernels
