// Block-wide reductions through shared memory, for any warp width. For .cu
// files only; `sh` holds one float per warp (32 is enough for 1024 threads).
#pragma once
#include "kernels/gpu/gpu_runtime.h"

namespace condense::kernels::gpu {

__device__ inline float block_sum(float v, float* sh) {
  v = warp_sum(v);
  const int lane = threadIdx.x % CONDENSE_WARP, warp = threadIdx.x / CONDENSE_WARP;
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  float t = 0.f;
  for (int i = 0; i < int(blockDim.x) / CONDENSE_WARP; ++i) t += sh[i];
  __syncthreads();
  return t;
}

__device__ inline float block_max(float v, float* sh) {
  v = warp_max(v);
  const int lane = threadIdx.x % CONDENSE_WARP, warp = threadIdx.x / CONDENSE_WARP;
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  float t = -INFINITY;
  for (int i = 0; i < int(blockDim.x) / CONDENSE_WARP; ++i) t = fmaxf(t, sh[i]);
  __syncthreads();
  return t;
}

}  // namespace condense::kernels::gpu
