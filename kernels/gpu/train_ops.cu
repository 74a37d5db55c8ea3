#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/common/minifloat.h"
#include "kernels/gpu/attention_core.h"
#include "kernels/gpu/block_reduce.h"
#include "kernels/gpu/gpu_check.h"
#include "kernels/gpu/train_ops.h"
#include "kernels/gpu/train_step_ops.h"
#if !defined(__HIPCC__)
#include <cublas_v2.h>
#endif

namespace condense::kernels::gpu {

namespace {

gpuStream_t S(Stream& s) { return static_cast<gpuStream_t>(s.handle()); }
unsigned blocks_for(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

__device__ double block_sum_d(double v, double* sh) {
  // Fixed order: every thread's value to shared memory, thread 0 adds them up.
  sh[threadIdx.x] = v;
  __syncthreads();
  double t = 0;
  if (threadIdx.x == 0)
    for (int i = 0; i < int(blockDim.x); ++i) t += sh[i];
  __syncthreads();
  return t;
}

// ---- GEMM ------------------------------------------------------------------

template <class T>
__device__ __forceinline__ float load_el(const T* p, int64_t i) {
  if constexpr (sizeof(T) == 2) return __uint_as_float(uint32_t(p[i]) << 16);
  else return p[i];
}

// 64 x 64 tiles of C, 16-long k steps, 256 threads each computing 4 x 4.
template <class T>
__global__ void __launch_bounds__(256) gemm_tiled(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                                                  const T* __restrict__ a, int64_t lda, const T* __restrict__ b,
                                                  int64_t ldb, float beta, float* __restrict__ c, int64_t ldc) {
  constexpr int BM = 64, BN = 64, BK = 16;
  __shared__ float As[BK][BM + 1];
  __shared__ float Bs[BK][BN + 1];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t i0 = int64_t(blockIdx.y) * BM, j0 = int64_t(blockIdx.x) * BN;
  float acc[4][4] = {};
  for (int64_t p0 = 0; p0 < k; p0 += BK) {
    for (int t = threadIdx.x; t < BK * BM; t += blockDim.x) {
      const int pp = t / BM, ii = t % BM;
      const int64_t i = i0 + ii, p = p0 + pp;
      As[pp][ii] = (i < m && p < k) ? load_el(a, ta ? p * lda + i : i * lda + p) : 0.f;
      const int jj = t % BN;
      const int64_t j = j0 + jj;
      Bs[pp][jj] = (j < n && p < k) ? load_el(b, tb ? j * ldb + p : p * ldb + j) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int pp = 0; pp < BK; ++pp) {
      float av[4], bv[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) av[r] = As[pp][ty * 4 + r];
#pragma unroll
      for (int q = 0; q < 4; ++q) bv[q] = Bs[pp][tx * 4 + q];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[r][q] = fmaf(av[r], bv[q], acc[r][q]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t i = i0 + ty * 4 + r, j = j0 + tx * 4 + q;
      if (i < m && j < n) c[i * ldc + j] = alpha * acc[r][q] + (beta == 0.f ? 0.f : beta * c[i * ldc + j]);
    }
}

template <class T>
void gemm_own(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const T* a, int64_t lda, const T* b, int64_t ldb,
              float beta, float* c, int64_t ldc, Stream& s) {
  const dim3 grid(blocks_for(n, 64), blocks_for(m, 64));
  gemm_tiled<T><<<grid, 256, 0, S(s)>>>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  check_launch("gpu::gemm");
}

#if !defined(__HIPCC__)
void cublas_check(cublasStatus_t st, const char* call) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw GpuError(std::string("cuda: ") + call + " failed: cuBLAS status " + std::to_string(int(st)));
}
cublasHandle_t cublas(Stream& s) {
  thread_local cublasHandle_t h = [] {
    cublasHandle_t x;
    cublas_check(cublasCreate(&x), "cublasCreate");
    return x;
  }();
  cublas_check(cublasSetStream(h, S(s)), "cublasSetStream");
  return h;
}
#endif

// ---- element-wise backward --------------------------------------------------

__global__ void to_bf16_kernel(const float* __restrict__ x, int64_t n, uint16_t* __restrict__ out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = minifloat::f32_to_bf16(x[i]);
}

__global__ void rmsnorm_backward_rows(const float* __restrict__ x, const float* __restrict__ w, const float* dy, int64_t dim,
                                      float eps, float* dx, float* __restrict__ partial) {
  __shared__ float sh[32];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * dim;
  const float* dyr = dy + r * dim;
  float ss = 0.f, dot = 0.f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    ss = fmaf(xr[i], xr[i], ss);
    dot = fmaf(dyr[i] * w[i], xr[i], dot);
  }
  ss = block_sum(ss, sh);
  dot = block_sum(dot, sh);
  const float rr = 1.0f / sqrtf(ss / float(dim) + eps);
  const float c = rr * rr * rr * dot / float(dim);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float g = dyr[i];
    partial[r * dim + i] = g * xr[i] * rr;
    dx[r * dim + i] = rr * w[i] * g - xr[i] * c;
  }
}

__global__ void silu_mul_backward_kernel(const float* g, const float* u, const float* __restrict__ dh, int64_t n,
                                         int64_t ld_gu, int64_t ld_h, float* dg, float* du) {
  const int64_t r = blockIdx.y;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const float a = g[r * ld_gu + j], b = u[r * ld_gu + j], d = dh[r * ld_h + j];
  const float sg = 1.0f / (1.0f + expf(-a));
  const float silu = a * sg;
  dg[r * ld_gu + j] = d * b * sg * (1.0f + a * (1.0f - sg));
  du[r * ld_gu + j] = d * silu;
}

__global__ void rope_backward_kernel(float* dy, int64_t ld, int heads, int hd, int64_t pos0, const float* __restrict__ cos_t,
                                     const float* __restrict__ sin_t) {
  const int half = hd / 2;
  const int64_t r = blockIdx.y;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(heads) * half) return;
  const int h = int(i / half), j = int(i % half);
  float* v = dy + r * ld + int64_t(h) * hd;
  const float c = cos_t[(pos0 + r) * half + j], s = sin_t[(pos0 + r) * half + j];
  const float a = v[j], b = v[j + half];
  v[j] = a * c + b * s;
  v[j + half] = b * c - a * s;
}

// ---- attention (whole sequence, training) -----------------------------------

constexpr int kThreads = 128;
constexpr int kMaxHd = 256;

__device__ __forceinline__ float dot_row(const float* __restrict__ a, const float* __restrict__ b, int hd) {
  float d = 0.f;
  for (int i = 0; i < hd; ++i) d = fmaf(a[i], b[i], d);
  return d;
}

// One block per (query row i, head h): online softmax over keys 0..i. With
// `dout`, also D = dO . O, lse, and then dq (a second pass over the keys).
template <bool BACKWARD>
__global__ void __launch_bounds__(kThreads) attention_rows_kernel(const float* __restrict__ q, int64_t ldq,
                                                                  const float* __restrict__ k, const float* __restrict__ v,
                                                                  int64_t head_stride, int n_heads, int n_kv, int hd,
                                                                  float* __restrict__ out, int64_t ldo,
                                                                  const float* __restrict__ dout, int64_t ld_do,
                                                                  float* __restrict__ dq, int64_t ld_dq,
                                                                  float* __restrict__ lse_out, float* __restrict__ d_out) {
  constexpr int W = CONDENSE_WARP;
  constexpr int kPer = kMaxHd / W;
  __shared__ float qs[kMaxHd], dos[kMaxHd];
  __shared__ WarpStates<kThreads, kMaxHd> st;
  __shared__ float sh[32];
  const int64_t i = blockIdx.x;
  const int h = blockIdx.y;
  const int g = h / (n_heads / n_kv);
  const int lane = threadIdx.x % W, warp = threadIdx.x / W, warps = blockDim.x / W;
  const float inv = 1.0f / sqrtf(float(hd));
  const float* K = k + int64_t(g) * head_stride;
  const float* V = v + int64_t(g) * head_stride;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    qs[d] = q[i * ldq + int64_t(h) * hd + d] * inv;
    if constexpr (BACKWARD) dos[d] = dout[i * ld_do + int64_t(h) * hd + d];
  }
  __syncthreads();
  float m, l, acc[kPer];
  attend_keys<kPer>(i, hd, [&](int64_t j) { return dot_row(qs, K + j * hd, hd); }, [&](int64_t j, int d) { return V[j * hd + d]; },
                    m, l, acc);
  stash_warp<kPer>(st, hd, m, l, acc);
  __syncthreads();
  float M, L;
  merged_max_sum(st, M, L);
  // O, by every thread for its dims (fixed warp order).
  float dsum = 0.f;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    const float o = merged_output(st, M, L, d);
    if constexpr (!BACKWARD) out[i * ldo + int64_t(h) * hd + d] = o;
    else dsum = fmaf(dos[d], o, dsum);
  }
  if constexpr (BACKWARD) {
    const float D = block_sum(dsum, sh);
    const float lse = M + logf(L);
    if (threadIdx.x == 0) {
      lse_out[i * n_heads + h] = lse;
      d_out[i * n_heads + h] = D;
    }
    // dq = inv * sum_j P_ij (dP_ij - D) k_j, dP_ij = dO . v_j
#pragma unroll
    for (int t = 0; t < kPer; ++t) acc[t] = 0.f;
    for (int64_t j0 = int64_t(warp) * W; j0 <= i; j0 += int64_t(warps) * W) {
      const int64_t j = j0 + lane;
      float ds = 0.f;
      if (j <= i) {
        const float p = expf(dot_row(qs, K + j * hd, hd) - lse);
        ds = p * (dot_row(dos, V + j * hd, hd) - D);
      }
      const int cnt = i - j0 + 1 < W ? int(i - j0 + 1) : W;
      for (int jj = 0; jj < cnt; ++jj) {
        const float dsj = shfl(ds, jj);
        const float* kr = K + (j0 + jj) * hd;
#pragma unroll
        for (int t = 0; t < kPer; ++t) {
          const int d = lane + t * W;
          if (d < hd) acc[t] = fmaf(dsj, kr[d], acc[t]);
        }
      }
    }
    __syncthreads();  // st.acc is reused
#pragma unroll
    for (int t = 0; t < kPer; ++t) {
      const int d = lane + t * W;
      if (d < hd) st.acc[warp][d] = acc[t];
    }
    __syncthreads();
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
      float s = 0.f;
      for (int w = 0; w < warps; ++w) s += st.acc[w][d];
      dq[i * ld_dq + int64_t(h) * hd + d] = s * inv;
    }
  }
}

// One block per (key row j, kv head g): dv_j += sum P_ij dO_i, dk_j += inv *
// sum ds_ij q_i over the query heads of the group and the rows i >= j.
__global__ void __launch_bounds__(kThreads) attention_kv_grad_kernel(
    const float* __restrict__ q, int64_t ldq, const float* __restrict__ k, const float* __restrict__ v, int64_t head_stride,
    int64_t rows, int n_heads, int n_kv, int hd, const float* __restrict__ dout, int64_t ld_do, const float* __restrict__ lse,
    const float* __restrict__ Dv, float* __restrict__ dk, float* __restrict__ dv) {
  constexpr int W = CONDENSE_WARP;
  constexpr int kPer = kMaxHd / W;
  __shared__ float ks[kMaxHd], vs[kMaxHd];
  __shared__ float wk[kThreads / 32][kMaxHd], wv[kThreads / 32][kMaxHd];
  const int64_t j = blockIdx.x;
  const int g = blockIdx.y;
  const int group = n_heads / n_kv;
  const int lane = threadIdx.x % W, warp = threadIdx.x / W, warps = blockDim.x / W;
  const float inv = 1.0f / sqrtf(float(hd));
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    ks[d] = k[int64_t(g) * head_stride + j * hd + d] * inv;
    vs[d] = v[int64_t(g) * head_stride + j * hd + d];
  }
  __syncthreads();
  float ak[kPer], av[kPer];
#pragma unroll
  for (int t = 0; t < kPer; ++t) ak[t] = av[t] = 0.f;
  for (int hh = 0; hh < group; ++hh) {
    const int h = g * group + hh;
    for (int64_t i0 = j + int64_t(warp) * W; i0 < rows; i0 += int64_t(warps) * W) {
      const int64_t i = i0 + lane;
      float p = 0.f, ds = 0.f;
      if (i < rows) {
        p = expf(dot_row(q + i * ldq + int64_t(h) * hd, ks, hd) - lse[i * n_heads + h]);
        ds = p * (dot_row(dout + i * ld_do + int64_t(h) * hd, vs, hd) - Dv[i * n_heads + h]);
      }
      const int cnt = rows - i0 < W ? int(rows - i0) : W;
      for (int ii = 0; ii < cnt; ++ii) {
        const float pi = shfl(p, ii), dsi = shfl(ds, ii);
        const float* dor = dout + (i0 + ii) * ld_do + int64_t(h) * hd;
        const float* qr = q + (i0 + ii) * ldq + int64_t(h) * hd;
#pragma unroll
        for (int t = 0; t < kPer; ++t) {
          const int d = lane + t * W;
          if (d < hd) {
            av[t] = fmaf(pi, dor[d], av[t]);
            ak[t] = fmaf(dsi, qr[d], ak[t]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < kPer; ++t) {
    const int d = lane + t * W;
    if (d < hd) { wk[warp][d] = ak[t]; wv[warp][d] = av[t]; }
  }
  __syncthreads();
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float sk = 0.f, sv = 0.f;
    for (int w = 0; w < warps; ++w) { sk += wk[w][d]; sv += wv[w][d]; }
    dk[int64_t(g) * head_stride + j * hd + d] += sk * inv;
    dv[int64_t(g) * head_stride + j * hd + d] += sv;
  }
}

// ---- losses -------------------------------------------------------------------

__global__ void cross_entropy_kernel(const float* logits, const int32_t* __restrict__ targets, int64_t vocab, float scale,
                                     float* dlogits, double* row_loss) {
  __shared__ float sh[32];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * vocab;
  float* dx = dlogits + r * vocab;
  const int32_t t = targets[r];
  if (t < 0) {
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) dx[j] = 0.f;
    if (threadIdx.x == 0) row_loss[r] = 0;
    return;
  }
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, x[j]);
  mx = block_max(mx, sh);
  float se = 0.f;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) se += expf(x[j] - mx);
  se = block_sum(se, sh);
  const float lse = mx + logf(se);
  const float xt = x[t];
  __syncthreads();  // x[t] is read before any thread overwrites it (dlogits may alias logits)
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) dx[j] = scale * (expf(x[j] - lse) - (j == t ? 1.f : 0.f));
  if (threadIdx.x == 0) row_loss[r] = double(lse) - double(xt);
}

__global__ void kl_kernel(const float* __restrict__ teacher, const float* __restrict__ student, int64_t vocab, float T,
                          float scale, float* dstudent, double* row_kl) {
  __shared__ float sh[32];
  __shared__ double shd[1024];
  const int64_t r = blockIdx.x;
  const float* a = teacher + r * vocab;
  const float* b = student + r * vocab;
  const float invT = 1.0f / T;
  float ma = -INFINITY, mb = -INFINITY;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    ma = fmaxf(ma, a[j] * invT);
    mb = fmaxf(mb, b[j] * invT);
  }
  ma = block_max(ma, sh);
  mb = block_max(mb, sh);
  float sa = 0.f, sb = 0.f;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    sa += expf(a[j] * invT - ma);
    sb += expf(b[j] * invT - mb);
  }
  sa = block_sum(sa, sh);
  sb = block_sum(sb, sh);
  const float la = ma + logf(sa), lb = mb + logf(sb);
  double kl = 0;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float lp = a[j] * invT - la, lq = b[j] * invT - lb;
    const float p = expf(lp);
    kl += double(p) * double(lp - lq);
    if (dstudent) dstudent[r * vocab + j] = scale * T * (expf(lq) - p);
  }
  kl = block_sum_d(kl, shd);
  if (threadIdx.x == 0) row_kl[r] = double(T) * double(T) * kl;
}

// ---- optimizer ------------------------------------------------------------------

__global__ void adamw_kernel(float* w, const float* __restrict__ g, float* m, float* v, int64_t n, float b1, float b2, float eps,
                             float step_size, float inv_sqrt_bc2, float decay) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const float gj = g[j];
  const float mj = b1 * m[j] + (1.f - b1) * gj;
  const float vj = b2 * v[j] + (1.f - b2) * gj * gj;
  m[j] = mj;
  v[j] = vj;
  w[j] = w[j] * decay - step_size * mj / (sqrtf(vj) * inv_sqrt_bc2 + eps);
}

__global__ void mask_kernel(float* x, const uint64_t* __restrict__ kept, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n && !((kept[i >> 6] >> (i & 63)) & 1u)) x[i] = 0.f;
}

void check_hd(int hd, int n_heads, int n_kv, const char* what) {
  if (hd <= 0 || hd > kMaxHd) throw std::invalid_argument(std::string(what) + ": head_dim must be in 1..256");
  if (n_kv <= 0 || n_heads % n_kv != 0) throw std::invalid_argument(std::string(what) + ": n_heads must be a multiple of n_kv");
}

}  // namespace

void gemm_f32(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
              int64_t ldb, float beta, float* c, int64_t ldc, Stream& s) {
  if (m <= 0 || n <= 0) return;
#if defined(__HIPCC__)
  gemm_own<float>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, s);
#else
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
  cublas_check(cublasSgemm(cublas(s), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, int(n), int(m), int(k),
                           &alpha, b, int(ldb), a, int(lda), &beta, c, int(ldc)),
               "cublasSgemm");
#endif
}

void gemm_bf16(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* a, int64_t lda, const uint16_t* b,
               int64_t ldb, float beta, float* c, int64_t ldc, Stream& s) {
  if (m <= 0 || n <= 0) return;
#if defined(__HIPCC__)
  gemm_own<uint16_t>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, s);
#else
  cublas_check(cublasGemmEx(cublas(s), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, int(n), int(m), int(k),
                            &alpha, b, CUDA_R_16BF, int(ldb), a, CUDA_R_16BF, int(lda), &beta, c, CUDA_R_32F, int(ldc),
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx (bf16)");
#endif
}

void to_bf16(const float* x, int64_t n, uint16_t* out, Stream& s) {
  if (n <= 0) return;
  to_bf16_kernel<<<blocks_for(n, 256), 256, 0, S(s)>>>(x, n, out);
  check_launch("gpu::to_bf16");
}

void rmsnorm_backward(const float* x, const float* w, const float* dy, int64_t rows, int64_t dim, float eps, float* dx,
                      float* dw_accumulate, Stream& s, float* scratch) {
  if (rows <= 0) return;
  DeviceBuffer own(scratch ? 0 : size_t(rows * dim) * 4);
  float* partial = scratch ? scratch : own.as<float>();
  rmsnorm_backward_rows<<<unsigned(rows), 256, 0, S(s)>>>(x, w, dy, dim, eps, dx, partial);
  column_sums_add(partial, rows, dim, dw_accumulate, s);  // rows in order
  check_launch("gpu::rmsnorm_backward");
  if (!scratch) s.synchronize();  // the partial sums' block goes back to the pool
}

void silu_mul_backward(const float* g, const float* u, const float* dh, int64_t rows, int64_t n, int64_t ld_gu, int64_t ld_h,
                       float* dg, float* du, Stream& s) {
  for (int64_t r0 = 0; r0 < rows; r0 += 65535) {
    const int64_t c = rows - r0 < 65535 ? rows - r0 : 65535;
    silu_mul_backward_kernel<<<dim3(blocks_for(n, 256), unsigned(c)), 256, 0, S(s)>>>(
        g + r0 * ld_gu, u + r0 * ld_gu, dh + r0 * ld_h, n, ld_gu, ld_h, dg + r0 * ld_gu, du + r0 * ld_gu);
  }
  check_launch("gpu::silu_mul_backward");
}

void rope_backward(float* dy, int64_t rows, int64_t ld, int heads, int hd, int64_t pos0, const float* cos_t, const float* sin_t,
                   Stream& s) {
  for (int64_t r0 = 0; r0 < rows; r0 += 65535) {
    const int64_t c = rows - r0 < 65535 ? rows - r0 : 65535;
    rope_backward_kernel<<<dim3(blocks_for(int64_t(heads) * (hd / 2), 256), unsigned(c)), 256, 0, S(s)>>>(
        dy + r0 * ld, ld, heads, hd, pos0 + r0, cos_t, sin_t);
  }
  check_launch("gpu::rope_backward");
}

void attention_forward(const float* q, int64_t ldq, const float* k, const float* v, int64_t head_stride, int64_t rows,
                       int n_heads, int n_kv, int hd, float* out, int64_t ldo, Stream& s) {
  check_hd(hd, n_heads, n_kv, "gpu::attention_forward");
  if (rows <= 0) return;
  attention_rows_kernel<false><<<dim3(unsigned(rows), unsigned(n_heads)), kThreads, 0, S(s)>>>(
      q, ldq, k, v, head_stride, n_heads, n_kv, hd, out, ldo, nullptr, 0, nullptr, 0, nullptr, nullptr);
  check_launch("gpu::attention_forward");
}

void attention_backward(const float* q, int64_t ldq, const float* k, const float* v, int64_t head_stride, int64_t rows,
                        int n_heads, int n_kv, int hd, const float* dout, int64_t ld_do, float* dq, int64_t ld_dq, float* dk,
                        float* dv, Stream& s, float* scratch) {
  check_hd(hd, n_heads, n_kv, "gpu::attention_backward");
  if (rows <= 0) return;
  DeviceBuffer own(scratch ? 0 : size_t(2 * rows * n_heads) * 4);
  float* lse = scratch ? scratch : own.as<float>();
  float* D = lse + rows * n_heads;
  attention_rows_kernel<true><<<dim3(unsigned(rows), unsigned(n_heads)), kThreads, 0, S(s)>>>(
      q, ldq, k, v, head_stride, n_heads, n_kv, hd, nullptr, 0, dout, ld_do, dq, ld_dq, lse, D);
  attention_kv_grad_kernel<<<dim3(unsigned(rows), unsigned(n_kv)), kThreads, 0, S(s)>>>(
      q, ldq, k, v, head_stride, rows, n_heads, n_kv, hd, dout, ld_do, lse, D, dk, dv);
  check_launch("gpu::attention_backward");
  if (!scratch) s.synchronize();
}

void cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t vocab, float scale, float* dlogits,
                   double* row_loss, Stream& s) {
  if (rows <= 0) return;
  cross_entropy_kernel<<<unsigned(rows), 256, 0, S(s)>>>(logits, targets, vocab, scale, dlogits, row_loss);
  check_launch("gpu::cross_entropy");
}

void kl_divergence(const float* teacher, const float* student, int64_t rows, int64_t vocab, float temperature, float scale,
                   float* dstudent, double* row_kl, Stream& s) {
  if (rows <= 0) return;
  kl_kernel<<<unsigned(rows), 256, 0, S(s)>>>(teacher, student, vocab, temperature, scale, dstudent, row_kl);
  check_launch("gpu::kl_divergence");
}

void adamw(float* w, const float* g, float* m, float* v, int64_t n, float b1, float b2, float eps, float step_size,
           float inv_sqrt_bc2, float decay, Stream& s) {
  if (n <= 0) return;
  adamw_kernel<<<blocks_for(n, 256), 256, 0, S(s)>>>(w, g, m, v, n, b1, b2, eps, step_size, inv_sqrt_bc2, decay);
  check_launch("gpu::adamw");
}

void apply_mask(float* x, const uint64_t* kept, int64_t n, Stream& s) {
  if (n <= 0) return;
  mask_kernel<<<blocks_for(n, 256), 256, 0, S(s)>>>(x, kept, n);
  check_launch("gpu::apply_mask");
}

}  // namespace condense::kernels::gpu
