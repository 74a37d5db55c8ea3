// matmul on Mats: C = alpha * op(A) op(B) + beta * C, op = optional transpose.
// Training's three products of a linear layer y = x W^T are all this one call:
//   forward  y  = x  W^T   matmul(x, false, W, true, y)
//   input    dx = dy W     matmul(dy, false, W, false, dx)
//   weight   dW += dy^T x  matmul(dy, true, x, false, dW, 1, 1)
#pragma once
#include "core/ops/mat.h"

namespace condense::ops {

void matmul(const Mat& a, bool trans_a, const Mat& b, bool trans_b, const Mat& c, float alpha = 1.f, float beta = 0.f);

}  // namespace condense::ops
