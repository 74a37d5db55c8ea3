#include <cmath>

#include "kernels/gpu/gpu_check.h"
#include "kernels/gpu/train_step_ops.h"

namespace condense::kernels::gpu {

namespace {

gpuStream_t S(Stream& s) { return static_cast<gpuStream_t>(s.handle()); }
unsigned blocks_for(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

constexpr int kThreads = 256;
constexpr int64_t kSquaresPerBlock = 8192;  // elements per partial sum

__global__ void gather_rows_kernel(const float* __restrict__ table, int64_t dim, const int32_t* __restrict__ ids,
                                   float* __restrict__ out) {
  const int64_t r = blockIdx.y;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < dim) out[r * dim + j] = table[int64_t(ids[r]) * dim + j];
}

__global__ void scatter_add_rows_kernel(const float* __restrict__ dx, int64_t dim, const int32_t* __restrict__ unique_ids,
                                        const int32_t* __restrict__ offsets, const int32_t* __restrict__ positions,
                                        float* dtable) {
  const int64_t u = blockIdx.y;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= dim) return;
  float t = dtable[int64_t(unique_ids[u]) * dim + j];
  for (int32_t p = offsets[u]; p < offsets[u + 1]; ++p) t += dx[int64_t(positions[p]) * dim + j];
  dtable[int64_t(unique_ids[u]) * dim + j] = t;
}

// One thread per element of the head-major side.
template <bool TO_HEADS>
__global__ void heads_kernel(const float* __restrict__ src, int64_t batch, int64_t seq, int n_kv, int hd, float* __restrict__ dst) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = batch * seq * n_kv * hd;
  if (i >= total) return;
  const int64_t d = i % hd, t = (i / hd) % seq, h = (i / (hd * seq)) % n_kv, b = i / (int64_t(hd) * seq * n_kv);
  const int64_t row = (b * seq + t) * int64_t(n_kv) * hd + h * hd + d;
  if (TO_HEADS) dst[i] = src[row];
  else dst[row] = src[i];
}

__global__ void column_sums_kernel(const float* __restrict__ x, int64_t rows, int64_t cols, float* acc) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  float t = 0.f;
  for (int64_t r = 0; r < rows; ++r) t += x[r * cols + j];
  acc[j] += t;
}

__device__ double block_sum_fixed(double v, double* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int w = int(blockDim.x) / 2; w > 0; w /= 2) {  // a fixed tree: same order every run
    if (int(threadIdx.x) < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  return sh[0];
}

__global__ void sum_squares_kernel(const float* __restrict__ x, int64_t n, double* partial) {
  __shared__ double sh[kThreads];
  const int64_t b0 = int64_t(blockIdx.x) * kSquaresPerBlock;
  const int64_t end = b0 + kSquaresPerBlock < n ? b0 + kSquaresPerBlock : n;
  double t = 0;
  for (int64_t i = b0 + threadIdx.x; i < end; i += blockDim.x) t += double(x[i]) * double(x[i]);
  t = block_sum_fixed(t, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = t;
}

__global__ void reduce_partials_kernel(const double* __restrict__ partial, int64_t count, double* out) {
  __shared__ double sh[kThreads];
  double t = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) t += partial[i];
  t = block_sum_fixed(t, sh);
  if (threadIdx.x == 0) *out = t;
}

__global__ void scale_kernel(float* x, int64_t n, float f) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= f;
}

__global__ void axpy_kernel(float* y, const float* __restrict__ x, int64_t n, float a) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = fmaf(a, x[i], y[i]);
}

__global__ void non_finite_kernel(const float* __restrict__ x, int64_t n, int32_t* flag) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n && !isfinite(x[i])) *flag = 1;  // every writer writes the same value
}

__global__ void copy_unscored_kernel(const float* __restrict__ src, const int32_t* __restrict__ targets, int64_t cols,
                                     float* __restrict__ dst) {
  const int64_t r = blockIdx.y;
  if (targets[r] >= 0) return;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < cols) dst[r * cols + j] = src[r * cols + j];
}

// grid.y is limited to 65535: launches over rows go in slices.
template <class F>
void over_rows(int64_t rows, F launch) {
  for (int64_t r0 = 0; r0 < rows; r0 += 65535) launch(r0, rows - r0 < 65535 ? rows - r0 : 65535);
}

}  // namespace

void gather_rows(const float* table, int64_t dim, const int32_t* ids, int64_t rows, float* out, Stream& s) {
  over_rows(rows, [&](int64_t r0, int64_t n) {
    gather_rows_kernel<<<dim3(blocks_for(dim, kThreads), unsigned(n)), kThreads, 0, S(s)>>>(table, dim, ids + r0, out + r0 * dim);
  });
  check_launch("gpu::gather_rows");
}

void scatter_add_rows(const float* dx, int64_t dim, const int32_t* unique_ids, const int32_t* offsets, const int32_t* positions,
                      int64_t n_unique, float* dtable, Stream& s) {
  over_rows(n_unique, [&](int64_t u0, int64_t n) {
    scatter_add_rows_kernel<<<dim3(blocks_for(dim, kThreads), unsigned(n)), kThreads, 0, S(s)>>>(dx, dim, unique_ids + u0,
                                                                                                 offsets + u0, positions, dtable);
  });
  check_launch("gpu::scatter_add_rows");
}

void rows_to_heads(const float* rows, int64_t batch, int64_t seq, int n_kv, int hd, float* heads, Stream& s) {
  const int64_t n = batch * seq * n_kv * hd;
  if (n <= 0) return;
  heads_kernel<true><<<blocks_for(n, kThreads), kThreads, 0, S(s)>>>(rows, batch, seq, n_kv, hd, heads);
  check_launch("gpu::rows_to_heads");
}

void heads_to_rows(const float* heads, int64_t batch, int64_t seq, int n_kv, int hd, float* rows, Stream& s) {
  const int64_t n = batch * seq * n_kv * hd;
  if (n <= 0) return;
  heads_kernel<false><<<blocks_for(n, kThreads), kThreads, 0, S(s)>>>(heads, batch, seq, n_kv, hd, rows);
  check_launch("gpu::heads_to_rows");
}

void column_sums_add(const float* x, int64_t rows, int64_t cols, float* acc, Stream& s) {
  if (cols <= 0) return;
  column_sums_kernel<<<blocks_for(cols, kThreads), kThreads, 0, S(s)>>>(x, rows, cols, acc);
  check_launch("gpu::column_sums_add");
}

int64_t sum_squares_blocks(int64_t n) { return (n + kSquaresPerBlock - 1) / kSquaresPerBlock; }

void sum_squares(const float* x, int64_t n, double* partial, Stream& s) {
  if (n <= 0) return;
  sum_squares_kernel<<<unsigned(sum_squares_blocks(n)), kThreads, 0, S(s)>>>(x, n, partial);
  check_launch("gpu::sum_squares");
}

void reduce_partials(const double* partial, int64_t count, double* out, Stream& s) {
  reduce_partials_kernel<<<1, kThreads, 0, S(s)>>>(partial, count, out);
  check_launch("gpu::reduce_partials");
}

void scale(float* x, int64_t n, float factor, Stream& s) {
  if (n <= 0) return;
  scale_kernel<<<blocks_for(n, kThreads), kThreads, 0, S(s)>>>(x, n, factor);
  check_launch("gpu::scale");
}

void axpy(float* y, const float* x, int64_t n, float a, Stream& s) {
  if (n <= 0) return;
  axpy_kernel<<<blocks_for(n, kThreads), kThreads, 0, S(s)>>>(y, x, n, a);
  check_launch("gpu::axpy");
}

void flag_non_finite(const float* x, int64_t n, int32_t* flag, Stream& s) {
  if (n <= 0) return;
  non_finite_kernel<<<blocks_for(n, kThreads), kThreads, 0, S(s)>>>(x, n, flag);
  check_launch("gpu::flag_non_finite");
}

void copy_unscored_rows(const float* src, const int32_t* targets, int64_t rows, int64_t cols, float* dst, Stream& s) {
  over_rows(rows, [&](int64_t r0, int64_t n) {
    copy_unscored_kernel<<<dim3(blocks_for(cols, kThreads), unsigned(n)), kThreads, 0, S(s)>>>(src + r0 * cols, targets + r0,
                                                                                               cols, dst + r0 * cols);
  });
  check_launch("gpu::copy_unscored_rows");
}

}  // namespace condense::kernels::gpu
