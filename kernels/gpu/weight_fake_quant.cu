#include "kernels/common/minifloat.h"
#include "kernels/gpu/gpu_check.h"
#include "kernels/gpu/weight_fake_quant.h"

namespace condense::kernels::gpu {

namespace {

gpuStream_t S(Stream& s) { return static_cast<gpuStream_t>(s.handle()); }
unsigned blocks_for(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

constexpr int kThreads = 256;
constexpr int64_t kChunk = 256;  // elements of one scale summed by one thread (LSQ)
constexpr float kMinScale = 1e-10f;  // as train/fake_quant.cpp

__device__ __forceinline__ int64_t scale_index(const FakeQuantLayout& l, int64_t r, int64_t c) {
  switch (l.granularity) {
    case FakeQuantLayout::PerTensor: return 0;
    case FakeQuantLayout::PerChannel: return r;
    default: return r * ((l.cols + l.group - 1) / l.group) + c / l.group;
  }
}

// Elements of scale si, in the order the CPU visits them: the count, and the
// index of the t-th.
__device__ __forceinline__ int64_t scale_count(const FakeQuantLayout& l, int64_t si) {
  switch (l.granularity) {
    case FakeQuantLayout::PerTensor: return l.rows * l.cols;
    case FakeQuantLayout::PerChannel: return l.cols;
    default: {
      const int64_t gpr = (l.cols + l.group - 1) / l.group, c0 = (si % gpr) * l.group;
      return l.cols - c0 < l.group ? l.cols - c0 : l.group;
    }
  }
}
__device__ __forceinline__ int64_t scale_element(const FakeQuantLayout& l, int64_t si, int64_t t) {
  switch (l.granularity) {
    case FakeQuantLayout::PerTensor: return t;
    case FakeQuantLayout::PerChannel: return si * l.cols + t;
    default: {
      const int64_t gpr = (l.cols + l.group - 1) / l.group;
      return (si / gpr) * l.cols + (si % gpr) * l.group + t;
    }
  }
}

__device__ __forceinline__ bool kept_bit(const uint64_t* kept, int64_t i) { return !kept || ((kept[i >> 6] >> (i & 63)) & 1u); }

// The code of x / scale and its value in steps (quant_value / dequant_code of
// model/quantized_weight.cpp).
__device__ __forceinline__ float code_steps(const FakeQuantLayout& l, float x, float scale, float zero) {
  if (l.type == FakeQuantLayout::E4M3) return minifloat::e4m3_to_f32(minifloat::f32_to_e4m3(x / scale));
  float q = rintf(x / scale) + zero;
  if (!(q == q)) q = 0;
  q = fminf(fmaxf(q, float(l.qmin)), float(l.qmax));
  return q - zero;
}

__device__ __forceinline__ void step_range(const FakeQuantLayout& l, float zero, float& lo, float& hi) {
  if (l.type == FakeQuantLayout::E4M3) {
    lo = -448.f;
    hi = 448.f;
  } else {
    lo = float(l.qmin) - zero;
    hi = float(l.qmax) - zero;
  }
}

__device__ __forceinline__ float round_scale_up(float s) {
  if (!(s >= 6.103515625e-05f && s <= 65504.f)) return s;
  const uint16_t h = minifloat::f32_to_f16(s);
  float v = minifloat::f16_to_f32(h);
  if (v < s) v = minifloat::f16_to_f32(uint16_t(h + 1));
  return v;
}

__global__ void scales_kernel(float* scale, float* eff, int64_t n) {
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n) return;
  float s = scale[k];
  if (!(s >= kMinScale)) s = kMinScale;
  scale[k] = s;
  eff[k] = round_scale_up(s);
}

__global__ void quantize_kernel(FakeQuantLayout l, const float* __restrict__ eff, const uint8_t* __restrict__ zeros,
                                const uint64_t* __restrict__ kept, const float* __restrict__ latent, float* __restrict__ weight) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= l.rows * l.cols) return;
  if (!kept_bit(kept, i)) {
    weight[i] = 0.f;
    return;
  }
  const int64_t si = scale_index(l, i / l.cols, i % l.cols);
  const float zero = zeros ? float(zeros[si]) : 0.f;
  weight[i] = eff[si] * code_steps(l, latent[i], eff[si], zero);
}

// One thread per (scale, chunk of its elements): the chunk's LSQ sum.
__global__ void lsq_partial_kernel(FakeQuantLayout l, const float* __restrict__ eff, const uint8_t* __restrict__ zeros,
                                   const uint64_t* __restrict__ kept, const float* __restrict__ latent, const float* __restrict__ g,
                                   int64_t chunks, float* __restrict__ partial) {
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= l.num_scales * chunks) return;
  const int64_t si = k / chunks, c = k % chunks;
  const int64_t count = scale_count(l, si);
  const float scale = eff[si], zero = zeros ? float(zeros[si]) : 0.f;
  float lo, hi;
  step_range(l, zero, lo, hi);
  float t = 0.f;
  for (int64_t e = c * kChunk; e < count && e < (c + 1) * kChunk; ++e) {
    const int64_t i = scale_element(l, si, e);
    if (!kept_bit(kept, i)) continue;
    const float v = latent[i] / scale;
    const float q = code_steps(l, latent[i], scale, zero);
    t += g[i] * ((v >= lo && v <= hi) ? q - v : q);
  }
  partial[k] = t;
}

__global__ void lsq_sum_kernel(int64_t num_scales, int64_t chunks, const float* __restrict__ partial, float gscale,
                               float* scale_grad) {
  const int64_t si = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (si >= num_scales) return;
  float t = 0.f;
  for (int64_t c = 0; c < chunks; ++c) t += partial[si * chunks + c];
  scale_grad[si] += t * gscale;
}

__global__ void ste_kernel(FakeQuantLayout l, const float* __restrict__ eff, const uint8_t* __restrict__ zeros,
                           const uint64_t* __restrict__ kept, const float* __restrict__ latent, float* g, float* latent_grad) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= l.rows * l.cols) return;
  if (kept_bit(kept, i)) {
    const int64_t si = scale_index(l, i / l.cols, i % l.cols);
    const float zero = zeros ? float(zeros[si]) : 0.f;
    float lo, hi;
    step_range(l, zero, lo, hi);
    const float v = latent[i] / eff[si];
    if (v >= lo && v <= hi) latent_grad[i] += g[i];
  }
  g[i] = 0.f;
}

int64_t chunks_per_scale(const FakeQuantLayout& l) {
  const int64_t most = l.granularity == FakeQuantLayout::PerTensor ? l.rows * l.cols
                       : l.granularity == FakeQuantLayout::PerChannel ? l.cols
                                                                       : l.group;
  return (most + kChunk - 1) / kChunk;
}

}  // namespace

int64_t weight_fake_quant_scratch(const FakeQuantLayout& l) { return l.num_scales * chunks_per_scale(l); }

void weight_fake_quant(const FakeQuantLayout& l, float* scale, float* eff_scale, const uint8_t* zeros, const uint64_t* kept,
                       const float* latent, float* weight, Stream& s) {
  scales_kernel<<<blocks_for(l.num_scales, kThreads), kThreads, 0, S(s)>>>(scale, eff_scale, l.num_scales);
  quantize_kernel<<<blocks_for(l.rows * l.cols, kThreads), kThreads, 0, S(s)>>>(l, eff_scale, zeros, kept, latent, weight);
  check_launch("gpu::weight_fake_quant");
}

void weight_fake_quant_backward(const FakeQuantLayout& l, const float* eff_scale, const uint8_t* zeros, const uint64_t* kept,
                                const float* latent, float* grad, float* latent_grad, float* scale_grad, float gscale,
                                float* scratch, Stream& s) {
  if (scale_grad) {
    const int64_t chunks = chunks_per_scale(l);
    lsq_partial_kernel<<<blocks_for(l.num_scales * chunks, kThreads), kThreads, 0, S(s)>>>(l, eff_scale, zeros, kept, latent, grad,
                                                                                           chunks, scratch);
    lsq_sum_kernel<<<blocks_for(l.num_scales, kThreads), kThreads, 0, S(s)>>>(l.num_scales, chunks, scratch, gscale, scale_grad);
  }
  ste_kernel<<<blocks_for(l.rows * l.cols, kThreads), kThreads, 0, S(s)>>>(l, eff_scale, zeros, kept, latent, grad, latent_grad);
  check_launch("gpu::weight_fake_quant_backward");
}

}  // namespace condense::kernels::gpu
