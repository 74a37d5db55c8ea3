#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/gpu/gpu_check.h"
#include "kernels/gpu/qgemv.h"
#if defined(__CUDACC__) && !defined(__HIPCC__)
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#endif

namespace condense::kernels::gpu {

namespace {

__host__ __device__ constexpr int elems_per_16(GCode c) {
  return c == GCode::F32 ? 4 : c == GCode::BF16 ? 8 : c == GCode::I4 ? 32 : 16;
}

__device__ __forceinline__ float e4m3_value(uint32_t c) {
  // Finite codes only (the loaders refuse NaN codes): exponent and mantissa
  // moved into an f32, times 2^120 to undo the bias difference.
  return __uint_as_float(((c & 0x7fu) << 20) | ((c & 0x80u) << 24)) * 0x1p120f;
}

// The 16 bytes at v as E raw values: integer codes (minus nothing: zero
// points are applied per group), fp8 / bf16 / f32 values.
template <GCode C, bool ASYM>
__device__ __forceinline__ void decode16(const uint4 v, float* q) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
  if constexpr (C == GCode::F32) {
#pragma unroll
    for (int i = 0; i < 4; ++i) q[i] = __uint_as_float(w[i]);
  } else if constexpr (C == GCode::BF16) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      q[2 * i] = __uint_as_float(w[i] << 16);
      q[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  } else if constexpr (C == GCode::I8) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
        q[4 * i + j] = ASYM ? float((w[i] >> (8 * j)) & 0xffu) : float(int32_t(w[i] << (24 - 8 * j)) >> 24);
  } else if constexpr (C == GCode::I4) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j)
        q[8 * i + j] = ASYM ? float((w[i] >> (4 * j)) & 0xfu) : float(int32_t(w[i] << (28 - 4 * j)) >> 28);
  } else {  // E4M3
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    // The hardware's fp8 -> f16 conversion, two codes at a time.
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(w[i] >> (16 * j)), __NV_E4M3);
        const float2 f = __half22float2(__half2(h));
        q[4 * i + 2 * j] = f.x;
        q[4 * i + 2 * j + 1] = f.y;
      }
#else
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) q[4 * i + j] = e4m3_value((w[i] >> (8 * j)) & 0xffu);
#endif
  }
}

// One element's raw value (the tails of rows that are not whole chunks).
template <GCode C, bool ASYM>
__device__ __forceinline__ float decode_one(const uint8_t* row, int64_t kk) {
  if constexpr (C == GCode::F32) return reinterpret_cast<const float*>(row)[kk];
  if constexpr (C == GCode::BF16) return __uint_as_float(uint32_t(reinterpret_cast<const uint16_t*>(row)[kk]) << 16);
  if constexpr (C == GCode::I8) return ASYM ? float(row[kk]) : float(int8_t(row[kk]));
  if constexpr (C == GCode::I4) {
    const uint32_t nib = (row[kk >> 1] >> ((kk & 1) * 4)) & 0xfu;
    return ASYM ? float(nib) : float(int32_t(nib << 28) >> 28);
  }
  return e4m3_value(row[kk]);
}

__host__ __device__ constexpr bool has_scales(GCode c) { return c == GCode::I8 || c == GCode::I4 || c == GCode::E4M3; }

// One warp per output row; lanes stride over the row's 16-byte chunks. M rows
// of x share each decoded chunk. ALIGNED: no scale group boundary inside a chunk.
template <GCode C, int M, bool ASYM, bool ALIGNED>
__global__ void __launch_bounds__(256) gemv_kernel(const float* __restrict__ x, int64_t ldx, const GpuQMatrix w,
                                                   float* __restrict__ y, int64_t ldy) {
  constexpr int E = elems_per_16(C);
  const int warps = blockDim.x / CONDENSE_WARP;
  const int lane = threadIdx.x % CONDENSE_WARP;
  const int64_t r = int64_t(blockIdx.x) * warps + threadIdx.x / CONDENSE_WARP;
  if (r >= w.n) return;
  const uint8_t* row = static_cast<const uint8_t*>(w.codes) + r * w.row_bytes;
  const int64_t groups = w.groups();
  const int64_t G = w.per_tensor ? w.k : w.group;
  const float* srow = has_scales(C) ? w.scales + (w.per_tensor ? 0 : r * groups) : nullptr;
  const uint8_t* zrow = ASYM ? w.zeros + r * groups : nullptr;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; ++m) acc[m] = 0.f;

  const int64_t full = w.k / E;
  for (int64_t c = lane; c < full; c += CONDENSE_WARP) {
    const uint4 v = *reinterpret_cast<const uint4*>(row + c * 16);
    float q[E];
    decode16<C, ASYM>(v, q);
    const int64_t k0 = c * E;
    if constexpr (ALIGNED) {
      float s = 1.f, z = 0.f;
      if constexpr (has_scales(C)) {
        const int64_t g = w.per_tensor ? 0 : k0 / G;
        s = srow[g];
        if constexpr (ASYM) z = float(zrow[g]);
      }
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const float4* xp = reinterpret_cast<const float4*>(x + m * ldx + k0);
        float d = 0.f, xs = 0.f;
#pragma unroll
        for (int i = 0; i < E / 4; ++i) {
          const float4 a = xp[i];
          d = fmaf(a.x, q[4 * i], d);
          d = fmaf(a.y, q[4 * i + 1], d);
          d = fmaf(a.z, q[4 * i + 2], d);
          d = fmaf(a.w, q[4 * i + 3], d);
          if constexpr (ASYM) xs += (a.x + a.y) + (a.z + a.w);
        }
        acc[m] = fmaf(s, ASYM ? fmaf(-z, xs, d) : d, acc[m]);
      }
    } else {
#pragma unroll
      for (int i = 0; i < E; ++i) {
        const int64_t g = (k0 + i) / G;
        q[i] = srow[g] * (ASYM ? q[i] - float(zrow[g]) : q[i]);
      }
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const float4* xp = reinterpret_cast<const float4*>(x + m * ldx + k0);
        float d = 0.f;
#pragma unroll
        for (int i = 0; i < E / 4; ++i) {
          const float4 a = xp[i];
          d = fmaf(a.x, q[4 * i], fmaf(a.y, q[4 * i + 1], fmaf(a.z, q[4 * i + 2], fmaf(a.w, q[4 * i + 3], d))));
        }
        acc[m] += d;
      }
    }
  }
  for (int64_t kk = full * E + lane; kk < w.k; kk += CONDENSE_WARP) {
    float wv = decode_one<C, ASYM>(row, kk);
    if constexpr (has_scales(C)) {
      const int64_t g = w.per_tensor ? 0 : kk / G;
      wv = srow[g] * (ASYM ? wv - float(zrow[g]) : wv);
    }
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = fmaf(x[m * ldx + kk], wv, acc[m]);
  }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const float t = warp_sum(acc[m]);
    if (lane == 0) y[m * ldy + r] = t;
  }
}

template <GCode C, bool ASYM>
__global__ void decode_rows_kernel(const GpuQMatrix w, const int32_t* __restrict__ rows, int64_t count,
                                   float* __restrict__ out, int64_t ldo) {
  const int64_t i = blockIdx.y;
  const int64_t kk = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count || kk >= w.k) return;
  const int64_t r = rows[i];
  const uint8_t* row = static_cast<const uint8_t*>(w.codes) + r * w.row_bytes;
  float v = decode_one<C, ASYM>(row, kk);
  if constexpr (has_scales(C)) {
    const int64_t g = w.per_tensor ? 0 : r * w.groups() + kk / w.group;
    v = w.scales[g] * (ASYM ? v - float(w.zeros[g]) : v);
  }
  out[i * ldo + kk] = v;
}

template <GCode C, int M, bool ASYM, bool ALIGNED>
void launch_m(const float* x, int64_t ldx, const GpuQMatrix& w, float* y, int64_t ldy, gpuStream_t st) {
  const int warps = 256 / warp_size();
  const unsigned blocks = unsigned((w.n + warps - 1) / warps);
  gemv_kernel<C, M, ASYM, ALIGNED><<<blocks, 256, 0, st>>>(x, ldx, w, y, ldy);
}

template <GCode C, bool ASYM, bool ALIGNED>
void launch(const float* x, int64_t m, int64_t ldx, const GpuQMatrix& w, float* y, int64_t ldy, gpuStream_t st) {
  for (int64_t i = 0; i < m;) {
    const int64_t left = m - i;
    const float* xi = x + i * ldx;
    float* yi = y + i * ldy;
    if (left >= 8) { launch_m<C, 8, ASYM, ALIGNED>(xi, ldx, w, yi, ldy, st); i += 8; }
    else if (left >= 4) { launch_m<C, 4, ASYM, ALIGNED>(xi, ldx, w, yi, ldy, st); i += 4; }
    else if (left >= 2) { launch_m<C, 2, ASYM, ALIGNED>(xi, ldx, w, yi, ldy, st); i += 2; }
    else { launch_m<C, 1, ASYM, ALIGNED>(xi, ldx, w, yi, ldy, st); i += 1; }
  }
}

template <GCode C>
void launch_scaled(const float* x, int64_t m, int64_t ldx, const GpuQMatrix& w, float* y, int64_t ldy, gpuStream_t st) {
  // Whole chunks never straddle a group boundary when a row has one group.
  const bool aligned = w.per_tensor || w.group >= w.k || w.group % elems_per_16(C) == 0;
  if constexpr (C == GCode::I8 || C == GCode::I4) {
    if (w.asym) {
      aligned ? launch<C, true, true>(x, m, ldx, w, y, ldy, st) : launch<C, true, false>(x, m, ldx, w, y, ldy, st);
      return;
    }
  }
  aligned ? launch<C, false, true>(x, m, ldx, w, y, ldy, st) : launch<C, false, false>(x, m, ldx, w, y, ldy, st);
}

void validate(const GpuQMatrix& w, const char* what) {
  auto bad = [&](const std::string& why) { throw std::invalid_argument(std::string(what) + ": " + why); };
  if (w.n <= 0 || w.k <= 0) bad("empty matrix");
  if (w.row_bytes != gpu_row_bytes(w.code, w.k)) bad("row_bytes does not match the code and k");
  if (has_scales(w.code) && !w.scales) bad("quantized codes without scales");
  if (has_scales(w.code) && !w.per_tensor && w.group <= 0) bad("group must be positive");
  if (w.asym && !(w.code == GCode::I8 || w.code == GCode::I4)) bad("zero points need int8 / int4 codes");
  if (w.asym && !w.zeros) bad("asymmetric codes without zero points");
}

}  // namespace

int64_t gpu_row_bytes(GCode code, int64_t k) {
  const int64_t bytes = code == GCode::F32 ? 4 * k : code == GCode::BF16 ? 2 * k : code == GCode::I4 ? (k + 1) / 2 : k;
  return (bytes + 15) / 16 * 16;
}

std::vector<uint8_t> pack_gpu_codes(GCode code, int64_t n, int64_t k, const void* elements) {
  const int64_t rb = gpu_row_bytes(code, k);
  std::vector<uint8_t> out(size_t(n * rb), 0);
  const uint8_t* in = static_cast<const uint8_t*>(elements);
  for (int64_t r = 0; r < n; ++r) {
    uint8_t* o = out.data() + r * rb;
    switch (code) {
      case GCode::F32: std::memcpy(o, in + r * k * 4, size_t(k * 4)); break;
      case GCode::BF16: std::memcpy(o, in + r * k * 2, size_t(k * 2)); break;
      case GCode::I8:
      case GCode::E4M3: std::memcpy(o, in + r * k, size_t(k)); break;
      case GCode::I4:
        for (int64_t c = 0; c < k; ++c) o[c >> 1] |= uint8_t((in[r * k + c] & 0xf) << ((c & 1) * 4));
        break;
    }
  }
  return out;
}

void linear(const float* x, int64_t m, int64_t ldx, const GpuQMatrix& w, float* y, int64_t ldy, Stream& s) {
  validate(w, "gpu::linear");
  if (m <= 0) return;
  if (ldx % 4 != 0 || (reinterpret_cast<uintptr_t>(x) & 15) != 0)
    throw std::invalid_argument("gpu::linear: x must be 16-byte aligned with a row stride that is a multiple of 4");
  const gpuStream_t st = static_cast<gpuStream_t>(s.handle());
  switch (w.code) {
    case GCode::F32: launch<GCode::F32, false, true>(x, m, ldx, w, y, ldy, st); break;
    case GCode::BF16: launch<GCode::BF16, false, true>(x, m, ldx, w, y, ldy, st); break;
    case GCode::I8: launch_scaled<GCode::I8>(x, m, ldx, w, y, ldy, st); break;
    case GCode::I4: launch_scaled<GCode::I4>(x, m, ldx, w, y, ldy, st); break;
    case GCode::E4M3: launch_scaled<GCode::E4M3>(x, m, ldx, w, y, ldy, st); break;
  }
  check_launch("gpu::linear");
}

void decode_rows(const GpuQMatrix& w, const int32_t* rows, int64_t count, float* out, int64_t ldo, Stream& s) {
  validate(w, "gpu::decode_rows");
  const gpuStream_t st = static_cast<gpuStream_t>(s.handle());
  // Rows go in grid.y (at most 65535 per launch).
  for (int64_t r0 = 0; r0 < count; r0 += 65535) {
    const int64_t c = count - r0 < 65535 ? count - r0 : 65535;
    const int32_t* rr = rows + r0;
    float* o = out + r0 * ldo;
    const dim3 grid(unsigned((w.k + 255) / 256), unsigned(c));
    switch (w.code) {
      case GCode::F32: decode_rows_kernel<GCode::F32, false><<<grid, 256, 0, st>>>(w, rr, c, o, ldo); break;
      case GCode::BF16: decode_rows_kernel<GCode::BF16, false><<<grid, 256, 0, st>>>(w, rr, c, o, ldo); break;
      case GCode::E4M3: decode_rows_kernel<GCode::E4M3, false><<<grid, 256, 0, st>>>(w, rr, c, o, ldo); break;
      case GCode::I8:
        w.asym ? decode_rows_kernel<GCode::I8, true><<<grid, 256, 0, st>>>(w, rr, c, o, ldo)
               : decode_rows_kernel<GCode::I8, false><<<grid, 256, 0, st>>>(w, rr, c, o, ldo);
        break;
      case GCode::I4:
        w.asym ? decode_rows_kernel<GCode::I4, true><<<grid, 256, 0, st>>>(w, rr, c, o, ldo)
               : decode_rows_kernel<GCode::I4, false><<<grid, 256, 0, st>>>(w, rr, c, o, ldo);
        break;
    }
  }
  check_launch("gpu::decode_rows");
}

}  // namespace condense::kernels::gpu
