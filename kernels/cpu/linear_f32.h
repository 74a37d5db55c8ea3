// Dense f32 linear layer over pre-packed weights: y[m, n] = sum_k x[m, k] * W[n, k].
// W ([n, k], row-major, "out x in" as HF stores it) is packed once into panels of
// kPanel output rows laid out [panel][k][kPanel], zero-padded past n, so that both
// the decode GEMV (m = 1) and the prefill GEMM stream each panel contiguously.
#pragma once
#include <cstdint>

namespace condense::kernels {

inline constexpr int kPanel = 32;

// Floats needed to pack n rows of length k.
int64_t packed_f32_size(int64_t n, int64_t k);
// Writes rows [row0, row0 + rows) of a packed matrix with n_total rows from the
// row-major block w [rows, k]. Calling it for consecutive blocks packs several
// weight matrices as one (fused QKV, fused gate/up). Padding rows must be zeroed
// by the caller once (e.g. by zero-filling the buffer).
void pack_f32_rows(const float* w, int64_t rows, int64_t k, int64_t row0, float* packed);

// x: [m, k] with row stride ldx; packed: from pack_f32_rows for n rows;
// y: [m, n] with row stride ldy; y must not alias x. Uses the OpenMP threads.
void linear_f32(const float* x, int64_t m, int64_t k, int64_t ldx, const float* packed, int64_t n, float* y,
                int64_t ldy);

}  // namespace condense::kernels
