// The runtime's elementwise transformer steps on the GPU, each the CPU's
// (kernels/cpu/transformer_f32.h) on device f32 rows:
//   rmsnorm:  out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w; out may alias x
//   rope:     HF rotate-half on heads [h0, h0 + heads) of each row, row r at
//             position pos[r]; cos/sin: [max_pos, hd/2] tables (the CPU's, uploaded)
//   silu_mul: h[r, j] = silu(g[r, j]) * u[r, j]; h may alias g
//   add:      x += y;  add_bias: x[r, :] += b
//   fake_quant_rows: activation quantization as the model defines it: int8 per
//             row (s = amax / 127, x = s * round(x / s)) or fp8 E4M3 with a static
//             scale (x = s * e4m3(x / s)); in place
//   argmax_rows: idx[r] = the first index of row r's largest value
// All pointers are device memory; strides in elements.
#pragma once
#include <cstdint>

namespace condense::kernels::gpu {

class Stream;

void rmsnorm(const float* x, int64_t ldx, int64_t rows, int64_t dim, const float* w, float eps, float* out, int64_t ldo,
             Stream& s);
void rope(float* x, int64_t ldx, int64_t rows, int h0, int heads, int hd, const int32_t* pos, const float* cos_t,
          const float* sin_t, Stream& s);
void silu_mul(const float* g, int64_t ldg, const float* u, int64_t ldu, int64_t rows, int64_t n, float* h, int64_t ldh,
              Stream& s);
void add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t rows, int64_t cols, Stream& s);
void add_bias(float* x, int64_t ldx, int64_t rows, int64_t cols, const float* b, Stream& s);
enum class ActQuant : uint8_t { None, Int8PerRow, E4M3Static };
void fake_quant_rows(float* x, int64_t ldx, int64_t rows, int64_t cols, ActQuant q, float static_scale, Stream& s);
void argmax_rows(const float* x, int64_t ldx, int64_t rows, int64_t cols, int32_t* idx, Stream& s);

}  // namespace condense::kernels::gpu
