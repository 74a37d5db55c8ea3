// The integer-activation path of linear_q (layouts with a8 or a16 set); kernels only.
#pragma once
#include <cstdint>

#include "kernels/cpu/qlinear.h"

namespace condense::kernels {

void linear_a8(const float* x, int64_t m, int64_t ldx, const QMatrix& w, float* y, int64_t ldy);

}  // namespace condense::kernels
