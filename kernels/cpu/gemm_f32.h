// General f32 matrix product over strided operands, for training (forward and
// backward products of activations and weights, whose transposes differ):
//   C[i, j] = alpha * sum_p A(i, p) * B(p, j) + beta * C[i, j]
// A(i, p) = a[i * a_rs + p * a_cs], B(p, j) = b[p * b_rs + j * b_cs]; C is
// row-major with row stride ldc and must not overlap A or B. beta == 0 ignores
// C's old contents (NaN included). Uses the OpenMP threads.
#pragma once
#include <cstdint>

namespace condense::kernels {

void gemm_f32(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
              int64_t b_rs, int64_t b_cs, float beta, float* c, int64_t ldc);

}  // namespace condense::kernels
