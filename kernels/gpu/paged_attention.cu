#include <stdexcept>
#include <string>

#include "kernels/common/int_codes.h"
#include "kernels/common/minifloat.h"
#include "kernels/gpu/attention_core.h"
#include "kernels/gpu/gpu_check.h"
#include "kernels/gpu/paged_attention.h"

namespace condense::kernels::gpu {

namespace {

__host__ __device__ constexpr int kv_bytes(GKv c) { return c == GKv::F32 ? 4 : (c == GKv::F16 || c == GKv::BF16) ? 2 : 1; }

template <GKv C>
__device__ __forceinline__ float kv_load(const uint8_t* p, int64_t i, float scale) {
  if constexpr (C == GKv::F32) return reinterpret_cast<const float*>(p)[i];
  if constexpr (C == GKv::F16) return minifloat::f16_finite_to_f32(reinterpret_cast<const uint16_t*>(p)[i]);
  if constexpr (C == GKv::BF16) return __uint_as_float(uint32_t(reinterpret_cast<const uint16_t*>(p)[i]) << 16);
  if constexpr (C == GKv::E4M3) return scale * minifloat::e4m3_finite_to_f32(p[i]);
  return scale * float(int8_t(p[i]));
}

template <GKv C>
__device__ __forceinline__ void kv_store(uint8_t* p, int64_t i, float x, float scale) {
  if constexpr (C == GKv::F32) reinterpret_cast<float*>(p)[i] = x;
  if constexpr (C == GKv::F16) reinterpret_cast<uint16_t*>(p)[i] = minifloat::f32_to_f16(x);
  if constexpr (C == GKv::BF16) reinterpret_cast<uint16_t*>(p)[i] = minifloat::f32_to_bf16(x);
  if constexpr (C == GKv::E4M3) p[i] = minifloat::f32_to_e4m3(x / scale);
  if constexpr (C == GKv::I8) p[i] = uint8_t(intcode::f32_to_i8(x / scale));
}

// Start of head h's K (or V) rows in the block holding position p of a row's table.
__device__ __forceinline__ const uint8_t* head_rows(const GpuKvLayer& kv, const int32_t* table, int64_t p, int h,
                                                    bool values) {
  const int64_t blk = table[p / kv.block_tokens];
  const int64_t plane = int64_t(kv.n_kv) * kv.block_tokens * kv.hd * kv_bytes(kv.code);
  return kv.base + blk * kv.block_bytes + (values ? plane : 0) +
         (int64_t(h) * kv.block_tokens + p % kv.block_tokens) * kv.hd * kv_bytes(kv.code);
}

template <GKv C>
__global__ void kv_write_kernel(const GpuKvLayer kv, const GpuRows r, const float* __restrict__ k, int64_t ldk,
                                const float* __restrict__ v, int64_t ldv) {
  const int64_t row = blockIdx.y;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over n_kv * hd
  if (i >= int64_t(kv.n_kv) * kv.hd) return;
  const int h = int(i / kv.hd), d = int(i % kv.hd);
  const int32_t* table = r.tables + r.table_off[row];
  const int64_t p = r.pos[row];
  const float ks = kv.k_scale ? kv.k_scale[h] : 1.f, vs = kv.v_scale ? kv.v_scale[h] : 1.f;
  kv_store<C>(const_cast<uint8_t*>(head_rows(kv, table, p, h, false)), d, k[row * ldk + i], ks);
  kv_store<C>(const_cast<uint8_t*>(head_rows(kv, table, p, h, true)), d, v[row * ldv + i], vs);
}

constexpr int kAttnThreads = 128;
constexpr int kMaxHd = 256;

// One block per (row, head): attention_core.h's pass over positions 0 .. pos.
template <GKv C>
__global__ void __launch_bounds__(kAttnThreads) attention_kernel(const float* __restrict__ q, int64_t ldq, int n_heads,
                                                                 const GpuKvLayer kv, const GpuRows r,
                                                                 float* __restrict__ out, int64_t ldo) {
  constexpr int kPer = kMaxHd / CONDENSE_WARP;  // output dims per lane, at most
  __shared__ float qs[kMaxHd];
  __shared__ WarpStates<kAttnThreads, kMaxHd> st;
  const int64_t row = blockIdx.x;
  const int h = blockIdx.y;
  const int hd = kv.hd;
  const int kvh = h / (n_heads / kv.n_kv);
  const float inv = 1.0f / sqrtf(float(hd));
  for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = q[row * ldq + int64_t(h) * hd + d] * inv;
  __syncthreads();
  const int32_t* table = r.tables + r.table_off[row];
  const float ks = kv.k_scale ? kv.k_scale[kvh] : 1.f, vs = kv.v_scale ? kv.v_scale[kvh] : 1.f;
  auto score = [&](int64_t p) {
    const uint8_t* kr = head_rows(kv, table, p, kvh, false);
    float d = 0.f;
    for (int i = 0; i < hd; ++i) d = fmaf(qs[i], kv_load<C>(kr, i, ks), d);
    return d;
  };
  auto value = [&](int64_t p, int d) { return kv_load<C>(head_rows(kv, table, p, kvh, true), d, vs); };
  float m, l, acc[kPer];
  attend_keys<kPer>(int64_t(r.pos[row]), hd, score, value, m, l, acc);
  stash_warp<kPer>(st, hd, m, l, acc);
  __syncthreads();
  float M, L;
  merged_max_sum(st, M, L);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) out[row * ldo + int64_t(h) * hd + d] = merged_output(st, M, L, d);
}

gpuStream_t S(Stream& s) { return static_cast<gpuStream_t>(s.handle()); }

void check_layer(const GpuKvLayer& kv, const char* what) {
  if (kv.hd <= 0 || kv.hd > kMaxHd || kv.n_kv <= 0 || kv.block_tokens <= 0)
    throw std::invalid_argument(std::string(what) + ": head_dim must be in 1.." + std::to_string(kMaxHd));
  if ((kv.code == GKv::E4M3 || kv.code == GKv::I8) && (!kv.k_scale || !kv.v_scale))
    throw std::invalid_argument(std::string(what) + ": fp8 / int8 KV needs k and v scales");
}

}  // namespace

void kv_write(const GpuKvLayer& kv, const GpuRows& r, const float* k, int64_t ldk, const float* v, int64_t ldv, Stream& s) {
  check_layer(kv, "gpu::kv_write");
  if (r.rows <= 0) return;
  // Rows go in grid.y (at most 65535 per launch).
  for (int64_t r0 = 0; r0 < r.rows; r0 += 65535) {
    const GpuRows rr{r.rows - r0 < 65535 ? r.rows - r0 : 65535, r.pos + r0, r.table_off + r0, r.tables};
    const float* kk = k + r0 * ldk;
    const float* vv = v + r0 * ldv;
    const dim3 grid(unsigned((int64_t(kv.n_kv) * kv.hd + 255) / 256), unsigned(rr.rows));
    switch (kv.code) {
      case GKv::F32: kv_write_kernel<GKv::F32><<<grid, 256, 0, S(s)>>>(kv, rr, kk, ldk, vv, ldv); break;
      case GKv::F16: kv_write_kernel<GKv::F16><<<grid, 256, 0, S(s)>>>(kv, rr, kk, ldk, vv, ldv); break;
      case GKv::BF16: kv_write_kernel<GKv::BF16><<<grid, 256, 0, S(s)>>>(kv, rr, kk, ldk, vv, ldv); break;
      case GKv::E4M3: kv_write_kernel<GKv::E4M3><<<grid, 256, 0, S(s)>>>(kv, rr, kk, ldk, vv, ldv); break;
      case GKv::I8: kv_write_kernel<GKv::I8><<<grid, 256, 0, S(s)>>>(kv, rr, kk, ldk, vv, ldv); break;
    }
  }
  check_launch("gpu::kv_write");
}

void attention(const float* q, int64_t ldq, int n_heads, const GpuKvLayer& kv, const GpuRows& r, float* out,
               int64_t ldo, Stream& s) {
  check_layer(kv, "gpu::attention");
  if (n_heads % kv.n_kv != 0) throw std::invalid_argument("gpu::attention: n_heads must be a multiple of n_kv");
  if (r.rows <= 0) return;
  const dim3 grid(unsigned(r.rows), unsigned(n_heads));
  switch (kv.code) {
    case GKv::F32: attention_kernel<GKv::F32><<<grid, kAttnThreads, 0, S(s)>>>(q, ldq, n_heads, kv, r, out, ldo); break;
    case GKv::F16: attention_kernel<GKv::F16><<<grid, kAttnThreads, 0, S(s)>>>(q, ldq, n_heads, kv, r, out, ldo); break;
    case GKv::BF16: attention_kernel<GKv::BF16><<<grid, kAttnThreads, 0, S(s)>>>(q, ldq, n_heads, kv, r, out, ldo); break;
    case GKv::E4M3: attention_kernel<GKv::E4M3><<<grid, kAttnThreads, 0, S(s)>>>(q, ldq, n_heads, kv, r, out, ldo); break;
    case GKv::I8: attention_kernel<GKv::I8><<<grid, kAttnThreads, 0, S(s)>>>(q, ldq, n_heads, kv, r, out, ldo); break;
  }
  check_launch("gpu::attention");
}

}  // namespace condense::kernels::gpu
