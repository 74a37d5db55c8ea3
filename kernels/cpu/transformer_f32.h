// The element-wise and attention kernels of a Llama block, f32, raw pointers.
// Rows are tokens; "ld" arguments are row strides in floats.
#pragma once
#include <cstdint>

namespace condense::kernels {

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w. out may alias x.
void rmsnorm_f32(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out);

// Rotate-half RoPE in place on `heads` heads of width hd per row; row r is at
// position pos0 + r. cos/sin: [max_pos, hd/2] tables.
void rope_f32(float* x, int64_t rows, int64_t ld, int heads, int hd, int64_t pos0, const float* cos_table,
              const float* sin_table);

// h[r, j] = silu(g[r, j]) * u[r, j] for j < n. h may alias g.
void silu_mul_f32(const float* g, const float* u, int64_t rows, int64_t n, int64_t ld_gu, float* h, int64_t ld_h);

// x[r, :] += y[r, :]
void add_f32(float* x, const float* y, int64_t n);

// Causal grouped-query attention of `rows` queries at positions pos0.. against
// keys/values 0 .. pos0 + rows - 1 already in the caches.
// q: [rows, n_heads*hd] stride ldq; out: [rows, n_heads*hd] stride ldo (must not
// alias q). kc, vc: head-major caches [n_kv][positions][hd], kv head h starting at
// h * head_stride, so each head's keys stream contiguously. Softmax in f32 with
// the max subtracted.
void attention_f32(const float* q, int64_t ldq, const float* kc, const float* vc, int64_t head_stride, int64_t rows,
                   int64_t pos0, int n_heads, int n_kv, int hd, float* out, int64_t ldo);

}  // namespace condense::kernels
