#include <algorithm>

#include "kernels/common/minifloat.h"
#include "kernels/gpu/block_reduce.h"
#include "kernels/gpu/gpu_check.h"
#include "kernels/gpu/transformer_ops.h"

namespace condense::kernels::gpu {

namespace {

constexpr int kThreads = 256;

// Block-wide reductions through shared memory (any warp width).
__global__ void rmsnorm_kernel(const float* __restrict__ x, int64_t ldx, int64_t dim, const float* __restrict__ w,
                               float eps, float* out, int64_t ldo) {
  __shared__ float sh[32];
  const float* xr = x + int64_t(blockIdx.x) * ldx;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
  ss = block_sum(ss, sh);
  const float inv = 1.0f / sqrtf(ss / float(dim) + eps);
  float* o = out + int64_t(blockIdx.x) * ldo;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = xr[i] * inv * w[i];
}

__global__ void rope_kernel(float* x, int64_t ldx, int h0, int heads, int hd, const int32_t* __restrict__ pos,
                            const float* __restrict__ cos_t, const float* __restrict__ sin_t) {
  const int half = hd / 2;
  const int64_t r = blockIdx.y;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over heads * half
  if (i >= int64_t(heads) * half) return;
  const int h = int(i / half), j = int(i % half);
  float* v = x + r * ldx + int64_t(h0 + h) * hd;
  const float c = cos_t[int64_t(pos[r]) * half + j], s = sin_t[int64_t(pos[r]) * half + j];
  const float a = v[j], b = v[j + half];
  v[j] = a * c - b * s;
  v[j + half] = b * c + a * s;
}

__global__ void silu_mul_kernel(const float* g, int64_t ldg, const float* __restrict__ u, int64_t ldu, int64_t n,
                                float* h, int64_t ldh) {
  const int64_t r = blockIdx.y;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const float a = g[r * ldg + j];
  h[r * ldh + j] = a / (1.0f + expf(-a)) * u[r * ldu + j];
}

__global__ void add_kernel(float* x, int64_t ldx, const float* __restrict__ y, int64_t ldy, int64_t cols) {
  const int64_t r = blockIdx.y;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < cols) x[r * ldx + j] += y[r * ldy + j];
}
__global__ void add_bias_kernel(float* x, int64_t ldx, int64_t cols, const float* __restrict__ b) {
  const int64_t r = blockIdx.y;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < cols) x[r * ldx + j] += b[j];
}

__global__ void fake_quant_kernel(float* x, int64_t ldx, int64_t cols, int mode, float static_scale) {
  __shared__ float sh[32];
  float* xr = x + int64_t(blockIdx.x) * ldx;
  if (mode == int(ActQuant::Int8PerRow)) {
    float amax = 0.f;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) amax = fmaxf(amax, fabsf(xr[i]));
    amax = block_max(amax, sh);
    if (amax == 0.f) return;
    const float s = amax / 127.0f;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const float q = fminf(fmaxf(rintf(xr[i] / s), -127.f), 127.f);
      xr[i] = s * q;
    }
  } else {
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
      xr[i] = static_scale * minifloat::e4m3_to_f32(minifloat::f32_to_e4m3(xr[i] / static_scale));
  }
}

__global__ void argmax_kernel(const float* __restrict__ x, int64_t ldx, int64_t cols, int32_t* idx) {
  __shared__ float shv[1024];
  __shared__ int64_t shi[1024];
  const float* xr = x + int64_t(blockIdx.x) * ldx;
  float best = -INFINITY;
  int64_t bi = cols;  // NaN-only rows end at index 0 below
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
    if (xr[i] > best) { best = xr[i]; bi = i; }
  shv[threadIdx.x] = best;
  shi[threadIdx.x] = bi;
  __syncthreads();
  for (int st = blockDim.x / 2; st > 0; st >>= 1) {
    if (int(threadIdx.x) < st) {
      const float ov = shv[threadIdx.x + st];
      const int64_t oi = shi[threadIdx.x + st];
      if (ov > shv[threadIdx.x] || (ov == shv[threadIdx.x] && oi < shi[threadIdx.x])) {
        shv[threadIdx.x] = ov;
        shi[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) idx[blockIdx.x] = int32_t(shi[0] < cols ? shi[0] : 0);
}

gpuStream_t S(Stream& s) { return static_cast<gpuStream_t>(s.handle()); }
// Rows go in grid.y, which holds at most 65535: longer batches launch in slices.
constexpr int64_t kMaxGridY = 65535;
dim3 grid2(int64_t cols, int64_t rows) { return dim3(unsigned((cols + kThreads - 1) / kThreads), unsigned(rows)); }

}  // namespace

void rmsnorm(const float* x, int64_t ldx, int64_t rows, int64_t dim, const float* w, float eps, float* out, int64_t ldo,
             Stream& s) {
  if (rows <= 0) return;
  rmsnorm_kernel<<<unsigned(rows), kThreads, 0, S(s)>>>(x, ldx, dim, w, eps, out, ldo);
  check_launch("gpu::rmsnorm");
}
void rope(float* x, int64_t ldx, int64_t rows, int h0, int heads, int hd, const int32_t* pos, const float* cos_t,
          const float* sin_t, Stream& s) {
  if (rows <= 0) return;
  for (int64_t r0 = 0; r0 < rows; r0 += kMaxGridY)
    rope_kernel<<<grid2(int64_t(heads) * (hd / 2), std::min(kMaxGridY, rows - r0)), kThreads, 0, S(s)>>>(x + r0 * ldx, ldx, h0, heads, hd,
                                                                                                     pos + r0, cos_t, sin_t);
  check_launch("gpu::rope");
}
void silu_mul(const float* g, int64_t ldg, const float* u, int64_t ldu, int64_t rows, int64_t n, float* h, int64_t ldh,
              Stream& s) {
  if (rows <= 0) return;
  for (int64_t r0 = 0; r0 < rows; r0 += kMaxGridY)
    silu_mul_kernel<<<grid2(n, std::min(kMaxGridY, rows - r0)), kThreads, 0, S(s)>>>(g + r0 * ldg, ldg, u + r0 * ldu, ldu, n,
                                                                                     h + r0 * ldh, ldh);
  check_launch("gpu::silu_mul");
}
void add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t rows, int64_t cols, Stream& s) {
  if (rows <= 0) return;
  for (int64_t r0 = 0; r0 < rows; r0 += kMaxGridY)
    add_kernel<<<grid2(cols, std::min(kMaxGridY, rows - r0)), kThreads, 0, S(s)>>>(x + r0 * ldx, ldx, y + r0 * ldy, ldy, cols);
  check_launch("gpu::add");
}
void add_bias(float* x, int64_t ldx, int64_t rows, int64_t cols, const float* b, Stream& s) {
  if (rows <= 0) return;
  for (int64_t r0 = 0; r0 < rows; r0 += kMaxGridY)
    add_bias_kernel<<<grid2(cols, std::min(kMaxGridY, rows - r0)), kThreads, 0, S(s)>>>(x + r0 * ldx, ldx, cols, b);
  check_launch("gpu::add_bias");
}
void fake_quant_rows(float* x, int64_t ldx, int64_t rows, int64_t cols, ActQuant q, float static_scale, Stream& s) {
  if (rows <= 0 || q == ActQuant::None) return;
  fake_quant_kernel<<<unsigned(rows), kThreads, 0, S(s)>>>(x, ldx, cols, int(q), static_scale);
  check_launch("gpu::fake_quant_rows");
}
void argmax_rows(const float* x, int64_t ldx, int64_t rows, int64_t cols, int32_t* idx, Stream& s) {
  if (rows <= 0) return;
  argmax_kernel<<<unsigned(rows), 1024, 0, S(s)>>>(x, ldx, cols, idx);
  check_launch("gpu::argmax_rows");
}

}  // namespace condense::kernels::gpu
