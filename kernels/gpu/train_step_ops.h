// The glue a whole training step needs on the GPU besides the layer kernels of
// train_ops.h: embedding rows in and their gradient out, the head-major K/V
// layout of the attention kernels, bias gradients, the global gradient norm,
// finiteness checks and the small vector updates of clipping and hidden-state
// losses. As in train_ops.h every sum runs in a fixed order (no atomics), so a
// step's result does not depend on scheduling. All pointers are device memory.
#pragma once
#include <cstdint>

namespace condense::kernels::gpu {

class Stream;

// out[r, :] = table[ids[r], :] (ids checked on the host beforehand).
void gather_rows(const float* table, int64_t dim, const int32_t* ids, int64_t rows, float* out, Stream& s);
// dtable[id, :] += sum of dx[p, :] over the rows p holding id, in row order.
// The rows are grouped on the host: unique_ids [n_unique], offsets
// [n_unique + 1] into positions (rows sorted by id, then by row).
void scatter_add_rows(const float* dx, int64_t dim, const int32_t* unique_ids, const int32_t* offsets,
                      const int32_t* positions, int64_t n_unique, float* dtable, Stream& s);

// rows [batch * seq, n_kv * hd] <-> head-major [batch][n_kv][seq][hd].
void rows_to_heads(const float* rows, int64_t batch, int64_t seq, int n_kv, int hd, float* heads, Stream& s);
void heads_to_rows(const float* heads, int64_t batch, int64_t seq, int n_kv, int hd, float* rows, Stream& s);

// acc[j] += sum over r of x[r, j] (rows in order): a bias's gradient.
void column_sums_add(const float* x, int64_t rows, int64_t cols, float* acc, Stream& s);

// Sum of squares of many vectors in one deterministic result. Each vector
// writes sum_squares_blocks(n) partials at its offset of `partial`; then
// reduce_partials adds all `count` partials in index order into *out.
int64_t sum_squares_blocks(int64_t n);
void sum_squares(const float* x, int64_t n, double* partial, Stream& s);
void reduce_partials(const double* partial, int64_t count, double* out, Stream& s);

void scale(float* x, int64_t n, float factor, Stream& s);      // x *= factor
void axpy(float* y, const float* x, int64_t n, float a, Stream& s);  // y += a x
// *flag = 1 if any of x[0..n) is NaN or infinite (flag is not cleared).
void flag_non_finite(const float* x, int64_t n, int32_t* flag, Stream& s);
// dst[r, :] = src[r, :] for the rows whose target is < 0 (unscored rows carry
// no distillation loss: the teacher's logits become the student's).
void copy_unscored_rows(const float* src, const int32_t* targets, int64_t rows, int64_t cols, float* dst, Stream& s);

}  // namespace condense::kernels::gpu
