// The online-softmax pass shared by the decode attention over a paged cache and
// the training attention over a contiguous sequence. For .cu files only.
//
// The warps of a block take the keys 0..last in chunks of one warp width
// (chunk c to warp c % warps): each lane scores one key, the warp updates its
// running max m and sum l, then every lane accumulates its output dims
// (d = lane + t * W) over the chunk's keys, values read coalesced. The warps'
// states go to shared memory; merge_warps combines them in a fixed order.
#pragma once
#include "kernels/gpu/gpu_runtime.h"

namespace condense::kernels::gpu {

// score(j): the lane's key j, scaled; value(j, d): value j's dim d.
template <int kPer, class Score, class Value>
__device__ __forceinline__ void attend_keys(int64_t last, int hd, Score score, Value value, float& m, float& l, float (&acc)[kPer]) {
  constexpr int W = CONDENSE_WARP;
  const int lane = threadIdx.x % W, warp = threadIdx.x / W, warps = blockDim.x / W;
  m = -INFINITY;
  l = 0.f;
#pragma unroll
  for (int t = 0; t < kPer; ++t) acc[t] = 0.f;
  for (int64_t j0 = int64_t(warp) * W; j0 <= last; j0 += int64_t(warps) * W) {
    const int64_t j = j0 + lane;
    const float sc = j <= last ? score(j) : -INFINITY;
    const float mn = fmaxf(m, warp_max(sc));
    const float corr = expf(m - mn);  // 0 at the start (m = -inf): it multiplies zeros
    const float e = j <= last ? expf(sc - mn) : 0.f;
    l = l * corr + warp_sum(e);
    m = mn;
#pragma unroll
    for (int t = 0; t < kPer; ++t) acc[t] *= corr;
    const int cnt = last - j0 + 1 < W ? int(last - j0 + 1) : W;
    for (int jj = 0; jj < cnt; ++jj) {
      const float pj = shfl(e, jj);
#pragma unroll
      for (int t = 0; t < kPer; ++t) {
        const int d = lane + t * W;
        if (d < hd) acc[t] = fmaf(pj, value(j0 + jj, d), acc[t]);
      }
    }
  }
}

// Shared state of the block's warps (sized for 32-wide warps, enough for 64).
template <int kThreads, int kMaxHd>
struct WarpStates {
  float m[kThreads / 32], l[kThreads / 32];
  float acc[kThreads / 32][kMaxHd];
};

template <int kPer, int kThreads, int kMaxHd>
__device__ __forceinline__ void stash_warp(WarpStates<kThreads, kMaxHd>& st, int hd, float m, float l, const float (&acc)[kPer]) {
  constexpr int W = CONDENSE_WARP;
  const int lane = threadIdx.x % W, warp = threadIdx.x / W;
  if (lane == 0) {
    st.m[warp] = m;
    st.l[warp] = l;
  }
#pragma unroll
  for (int t = 0; t < kPer; ++t) {
    const int d = lane + t * W;
    if (d < hd) st.acc[warp][d] = acc[t];
  }
}

// After a __syncthreads(): the block's max M and sum L, and output dim d.
template <int kThreads, int kMaxHd>
__device__ __forceinline__ void merged_max_sum(const WarpStates<kThreads, kMaxHd>& st, float& M, float& L) {
  const int warps = blockDim.x / CONDENSE_WARP;
  M = -INFINITY;
  for (int w = 0; w < warps; ++w) M = fmaxf(M, st.m[w]);
  L = 0.f;
  for (int w = 0; w < warps; ++w) L += st.m[w] == -INFINITY ? 0.f : st.l[w] * expf(st.m[w] - M);
}
template <int kThreads, int kMaxHd>
__device__ __forceinline__ float merged_output(const WarpStates<kThreads, kMaxHd>& st, float M, float L, int d) {
  const int warps = blockDim.x / CONDENSE_WARP;
  float o = 0.f;
  for (int w = 0; w < warps; ++w)
    if (st.m[w] != -INFINITY) o = fmaf(st.acc[w][d], expf(st.m[w] - M), o);
  return o / L;
}

}  // namespace condense::kernels::gpu
