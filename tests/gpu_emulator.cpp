// A host-memory stand-in for the GPU API (kernels/gpu/*.h) that training on
// the GPU uses, for test_gpu_emulated in builds without CUDA or HIP: "device"
// memory is malloc'd (filled with NaN bytes, as real device memory is never
// zeroed for you, so a read of an unwritten buffer shows), the stream runs each
// call at once, and each kernel is the CPU kernel its GPU version mirrors
// (kernels/cpu/*) or a plain loop. It stands in for every entry point of
// kernels/gpu/no_gpu.cpp, so the linker never pulls that file in beside it.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <vector>

#include "kernels/common/minifloat.h"
#include "kernels/cpu/transformer_backward_f32.h"
#include "kernels/cpu/transformer_f32.h"
#include "kernels/gpu/device_memory.h"
#include "kernels/gpu/device_query.h"
#include "kernels/gpu/train_ops.h"
#include "kernels/gpu/train_step_ops.h"
#include "kernels/gpu/transformer_ops.h"
#include "kernels/gpu/weight_fake_quant.h"
#include "model/quantized_weight.h"

namespace condense::kernels::gpu {

// ---- memory, streams ---------------------------------------------------------

bool available() { return true; }
void select_device(int) {}
const char* backend_name() { return "cuda"; }
int warp_size() { return 32; }
int multiprocessors() { return 1; }
Stream::Stream() : h_(this) {}
Stream::~Stream() = default;
void Stream::synchronize() {}
void* device_alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = std::malloc(bytes);  // exact size: the sanitizer build sees any overrun
  if (!p) throw GpuError("emulated device_alloc: out of memory");
  std::memset(p, 0xff, bytes);   // NaN floats
  return p;
}
void device_free(void* p) { std::free(p); }
PoolStats pool_stats() { return {}; }
void release_cached() {}
void copy_h2d(void* dst, const void* src, size_t bytes, Stream&) { if (bytes) std::memcpy(dst, src, bytes); }
void copy_d2h(void* dst, const void* src, size_t bytes, Stream&) { if (bytes) std::memcpy(dst, src, bytes); }
void copy_d2d(void* dst, const void* src, size_t bytes, Stream&) { if (bytes) std::memmove(dst, src, bytes); }
void memset_async(void* dst, int value, size_t bytes, Stream&) { if (bytes) std::memset(dst, value, bytes); }
DeviceBuffer upload(const void* src, size_t bytes, Stream& s) {
  DeviceBuffer b(bytes);
  copy_h2d(b.data(), src, bytes, s);
  return b;
}
void check_launch(const char*) {}
Graph::~Graph() = default;
void Graph::begin_capture(Stream&) { throw GpuError("emulated GPU: no graphs"); }
void Graph::end_capture(Stream&) { throw GpuError("emulated GPU: no graphs"); }
void Graph::replay(Stream&) { throw GpuError("emulated GPU: no graphs"); }
Timer::Timer() = default;
Timer::~Timer() = default;
void Timer::start(Stream&) {}
void Timer::stop(Stream&) {}
double Timer::seconds() { return 0; }

// ---- transformer_ops.h ---------------------------------------------------------

void rmsnorm(const float* x, int64_t ldx, int64_t rows, int64_t dim, const float* w, float eps, float* out, int64_t ldo, Stream&) {
  for (int64_t r = 0; r < rows; ++r) rmsnorm_f32(x + r * ldx, w, 1, dim, eps, out + r * ldo);
}
void rope(float* x, int64_t ldx, int64_t rows, int h0, int heads, int hd, const int32_t* pos, const float* cos_t,
          const float* sin_t, Stream&) {
  for (int64_t r = 0; r < rows; ++r) rope_f32(x + r * ldx + int64_t(h0) * hd, 1, ldx, heads, hd, pos[r], cos_t, sin_t);
}
void silu_mul(const float* g, int64_t ldg, const float* u, int64_t ldu, int64_t rows, int64_t n, float* h, int64_t ldh, Stream&) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      const float a = g[r * ldg + j];
      h[r * ldh + j] = a / (1.f + std::exp(-a)) * u[r * ldu + j];
    }
  }
}
void add(float* x, int64_t ldx, const float* y, int64_t ldy, int64_t rows, int64_t cols, Stream&) {
  for (int64_t r = 0; r < rows; ++r) add_f32(x + r * ldx, y + r * ldy, cols);
}
void add_bias(float* x, int64_t ldx, int64_t rows, int64_t cols, const float* b, Stream&) {
  for (int64_t r = 0; r < rows; ++r) add_f32(x + r * ldx, b, cols);
}

// ---- train_ops.h -----------------------------------------------------------------

namespace {
template <class Load>
void gemm_loop(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, int64_t lda, int64_t ldb, float beta, float* c,
               int64_t ldc, Load a_at, Load b_at) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double t = 0;
      for (int64_t p = 0; p < k; ++p) t += double(a_at(ta ? p * lda + i : i * lda + p)) * double(b_at(tb ? j * ldb + p : p * ldb + j));
      c[i * ldc + j] = float(alpha * t) + (beta == 0.f ? 0.f : beta * c[i * ldc + j]);
    }
  }
}
}  // namespace

void gemm_f32(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
              int64_t ldb, float beta, float* c, int64_t ldc, Stream&) {
  auto la = [a](int64_t i) { return a[i]; };
  auto lb = [b](int64_t i) { return b[i]; };
  gemm_loop(ta, tb, m, n, k, alpha, lda, ldb, beta, c, ldc, std::function<float(int64_t)>(la), std::function<float(int64_t)>(lb));
}
void gemm_bf16(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* a, int64_t lda, const uint16_t* b,
               int64_t ldb, float beta, float* c, int64_t ldc, Stream&) {
  auto la = [a](int64_t i) { return minifloat::bf16_to_f32(a[i]); };
  auto lb = [b](int64_t i) { return minifloat::bf16_to_f32(b[i]); };
  gemm_loop(ta, tb, m, n, k, alpha, lda, ldb, beta, c, ldc, std::function<float(int64_t)>(la), std::function<float(int64_t)>(lb));
}
void to_bf16(const float* x, int64_t n, uint16_t* out, Stream&) {
  for (int64_t i = 0; i < n; ++i) out[i] = minifloat::f32_to_bf16(x[i]);
}
void rmsnorm_backward(const float* x, const float* w, const float* dy, int64_t rows, int64_t dim, float eps, float* dx,
                      float* dw_accumulate, Stream&, float*) {
  rmsnorm_backward_f32(x, w, dy, rows, dim, eps, dx, dw_accumulate);
}
void silu_mul_backward(const float* g, const float* u, const float* dh, int64_t rows, int64_t n, int64_t ld_gu, int64_t ld_h,
                       float* dg, float* du, Stream&) {
  silu_mul_backward_f32(g, u, dh, rows, n, ld_gu, ld_h, dg, du);
}
void rope_backward(float* dy, int64_t rows, int64_t ld, int heads, int hd, int64_t pos0, const float* cos_t, const float* sin_t,
                   Stream&) {
  rope_backward_f32(dy, rows, ld, heads, hd, pos0, cos_t, sin_t);
}
void attention_forward(const float* q, int64_t ldq, const float* k, const float* v, int64_t head_stride, int64_t rows,
                       int n_heads, int n_kv, int hd, float* out, int64_t ldo, Stream&) {
  attention_f32(q, ldq, k, v, head_stride, rows, 0, n_heads, n_kv, hd, out, ldo);
}
void attention_backward(const float* q, int64_t ldq, const float* k, const float* v, int64_t head_stride, int64_t rows,
                        int n_heads, int n_kv, int hd, const float* dout, int64_t ld_do, float* dq, int64_t ld_dq, float* dk,
                        float* dv, Stream&, float*) {
  attention_backward_f32(q, ldq, k, v, head_stride, rows, n_heads, n_kv, hd, dout, ld_do, dq, ld_dq, dk, dv);
}
void cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t vocab, float scale, float* dlogits,
                   double* row_loss, Stream&) {
  for (int64_t r = 0; r < rows; ++r) row_loss[r] = cross_entropy_f32(logits + r * vocab, targets + r, 1, vocab, scale, dlogits + r * vocab);
}
void kl_divergence(const float* teacher, const float* student, int64_t rows, int64_t vocab, float temperature, float scale,
                   float* dstudent, double* row_kl, Stream&) {
  for (int64_t r = 0; r < rows; ++r) {
    row_kl[r] = kl_divergence_f32(teacher + r * vocab, student + r * vocab, 1, vocab, temperature, scale,
                                  dstudent ? dstudent + r * vocab : nullptr, nullptr);
  }
}
void adamw(float* w, const float* g, float* m, float* v, int64_t n, float b1, float b2, float eps, float step_size,
           float inv_sqrt_bc2, float decay, Stream&) {
  for (int64_t j = 0; j < n; ++j) {
    m[j] = b1 * m[j] + (1.f - b1) * g[j];
    v[j] = b2 * v[j] + (1.f - b2) * g[j] * g[j];
    w[j] = w[j] * decay - step_size * m[j] / (std::sqrt(v[j]) * inv_sqrt_bc2 + eps);
  }
}
void apply_mask(float* x, const uint64_t* kept, int64_t n, Stream&) {
  for (int64_t i = 0; i < n; ++i) {
    if (!((kept[i >> 6] >> (i & 63)) & 1u)) x[i] = 0.f;
  }
}

// ---- train_step_ops.h ------------------------------------------------------------

void gather_rows(const float* table, int64_t dim, const int32_t* ids, int64_t rows, float* out, Stream&) {
  for (int64_t r = 0; r < rows; ++r) std::memcpy(out + r * dim, table + int64_t(ids[r]) * dim, size_t(dim) * 4);
}
void scatter_add_rows(const float* dx, int64_t dim, const int32_t* unique_ids, const int32_t* offsets, const int32_t* positions,
                      int64_t n_unique, float* dtable, Stream&) {
  for (int64_t u = 0; u < n_unique; ++u) {
    for (int32_t p = offsets[u]; p < offsets[u + 1]; ++p) add_f32(dtable + int64_t(unique_ids[u]) * dim, dx + int64_t(positions[p]) * dim, dim);
  }
}
void rows_to_heads(const float* rows, int64_t batch, int64_t seq, int n_kv, int hd, float* heads, Stream&) {
  for (int64_t b = 0; b < batch; ++b)
    for (int h = 0; h < n_kv; ++h)
      for (int64_t t = 0; t < seq; ++t)
        std::memcpy(heads + ((b * n_kv + h) * seq + t) * hd, rows + (b * seq + t) * n_kv * hd + int64_t(h) * hd, size_t(hd) * 4);
}
void heads_to_rows(const float* heads, int64_t batch, int64_t seq, int n_kv, int hd, float* rows, Stream&) {
  for (int64_t b = 0; b < batch; ++b)
    for (int h = 0; h < n_kv; ++h)
      for (int64_t t = 0; t < seq; ++t)
        std::memcpy(rows + (b * seq + t) * n_kv * hd + int64_t(h) * hd, heads + ((b * n_kv + h) * seq + t) * hd, size_t(hd) * 4);
}
void column_sums_add(const float* x, int64_t rows, int64_t cols, float* acc, Stream&) {
  for (int64_t r = 0; r < rows; ++r) add_f32(acc, x + r * cols, cols);
}
int64_t sum_squares_blocks(int64_t n) { return n > 0 ? 1 : 0; }
void sum_squares(const float* x, int64_t n, double* partial, Stream&) {
  double t = 0;
  for (int64_t i = 0; i < n; ++i) t += double(x[i]) * x[i];
  partial[0] = t;
}
void reduce_partials(const double* partial, int64_t count, double* out, Stream&) {
  double t = 0;
  for (int64_t i = 0; i < count; ++i) t += partial[i];
  *out = t;
}
void scale(float* x, int64_t n, float factor, Stream&) {
  for (int64_t i = 0; i < n; ++i) x[i] *= factor;
}
void axpy(float* y, const float* x, int64_t n, float a, Stream&) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::fma(a, x[i], y[i]);
}
void flag_non_finite(const float* x, int64_t n, int32_t* flag, Stream&) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) *flag = 1;
  }
}
void copy_unscored_rows(const float* src, const int32_t* targets, int64_t rows, int64_t cols, float* dst, Stream&) {
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] < 0) std::memcpy(dst + r * cols, src + r * cols, size_t(cols) * 4);
  }
}

// ---- weight_fake_quant.h (model/quantized_weight.h's own functions) ----------------

namespace {
QuantScheme scheme_of(const FakeQuantLayout& l) {
  const DType t = l.type == FakeQuantLayout::Int8 ? DType::I8 : l.type == FakeQuantLayout::Int4 ? DType::I4 : DType::F8E4M3;
  const Granularity g = l.granularity == FakeQuantLayout::PerTensor    ? Granularity::PerTensor
                        : l.granularity == FakeQuantLayout::PerChannel ? Granularity::PerChannel
                                                                       : Granularity::Group;
  return QuantScheme::of(t, g, l.group, l.symmetric);
}
bool kept_bit(const uint64_t* kept, int64_t i) { return !kept || ((kept[i >> 6] >> (i & 63)) & 1u); }
}  // namespace

int64_t weight_fake_quant_scratch(const FakeQuantLayout&) { return 1; }

void weight_fake_quant(const FakeQuantLayout& l, float* scale, float* eff, const uint8_t* zeros, const uint64_t* kept,
                       const float* latent, float* weight, Stream&) {
  const QuantScheme s = scheme_of(l);
  for (int64_t k = 0; k < l.num_scales; ++k) {
    if (!(scale[k] >= 1e-10f)) scale[k] = 1e-10f;
    eff[k] = round_scale_up(scale[k]);
  }
  for (int64_t r = 0; r < l.rows; ++r) {
    for (int64_t c = 0; c < l.cols; ++c) {
      const int64_t i = r * l.cols + c, si = s.scale_index(r, c, l.cols);
      const uint8_t z = zeros ? zeros[si] : 0;
      weight[i] = kept_bit(kept, i) ? dequant_code(s, quant_value(s, latent[i], eff[si], z), eff[si], z) : 0.f;
    }
  }
}

void weight_fake_quant_backward(const FakeQuantLayout& l, const float* eff, const uint8_t* zeros, const uint64_t* kept,
                                const float* latent, float* grad, float* latent_grad, float* scale_grad, float gscale, float*,
                                Stream&) {
  const QuantScheme s = scheme_of(l);
  for (int64_t r = 0; r < l.rows; ++r) {
    for (int64_t c = 0; c < l.cols; ++c) {
      const int64_t i = r * l.cols + c, si = s.scale_index(r, c, l.cols);
      if (kept_bit(kept, i)) {
        const uint8_t z = zeros ? zeros[si] : 0;
        const float v = latent[i] / eff[si];
        const float lo = s.type == DType::F8E4M3 ? -448.f : float(s.qmin()) - float(z);
        const float hi = s.type == DType::F8E4M3 ? 448.f : float(s.qmax()) - float(z);
        const bool inside = v >= lo && v <= hi;
        if (inside) latent_grad[i] += grad[i];
        if (scale_grad) {
          const float q = dequant_code(s, quant_value(s, latent[i], eff[si], z), 1.f, z);
          scale_grad[si] += grad[i] * (inside ? q - v : q) * gscale;
        }
      }
      grad[i] = 0.f;
    }
  }
}

}  // namespace condense::kernels::gpu
