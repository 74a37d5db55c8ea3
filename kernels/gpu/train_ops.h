// Training kernels on the GPU, one per CPU kernel of
// kernels/cpu/transformer_backward_f32.h (same arguments and layouts, device
// pointers), plus the forward attention of a whole sequence, AdamW, masks and
// the GEMMs. Every reduction runs in a fixed order (no atomics), so a step's
// result does not depend on scheduling: training stays reproducible.
#pragma once
#include <cstdint>

namespace condense::kernels::gpu {

class Stream;

// C[m, n] = alpha * op(A) op(B) + beta * C, row-major, f32 inputs, f32
// accumulation (CUDA: cuBLAS without TF32; HIP: condense's tiled kernel).
void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
              const float* b, int64_t ldb, float beta, float* c, int64_t ldc, Stream& s);
// The same with bf16 inputs (uint16 bit patterns) and f32 C: mixed precision.
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const uint16_t* a, int64_t lda,
               const uint16_t* b, int64_t ldb, float beta, float* c, int64_t ldc, Stream& s);
// bf16 copies of f32 values (round to nearest even), for the GEMMs' inputs.
void to_bf16(const float* x, int64_t n, uint16_t* out, Stream& s);

// As the CPU kernels (kernels/cpu/transformer_backward_f32.h).
// scratch: rows * dim floats of device memory the call may use; without it
// the call takes a block from the pool and synchronizes s to give it back.
void rmsnorm_backward(const float* x, const float* w, const float* dy, int64_t rows, int64_t dim, float eps, float* dx,
                      float* dw_accumulate, Stream& s, float* scratch = nullptr);
void silu_mul_backward(const float* g, const float* u, const float* dh, int64_t rows, int64_t n, int64_t ld_gu,
                       int64_t ld_h, float* dg, float* du, Stream& s);
void rope_backward(float* dy, int64_t rows, int64_t ld, int heads, int hd, int64_t pos0, const float* cos_t,
                   const float* sin_t, Stream& s);

// Causal GQA attention of one whole sequence: q [rows, n_heads*hd] (ldq), k / v
// head-major [n_kv][rows][hd] (head_stride apart), out [rows, n_heads*hd]
// (ldo). Online softmax: no [rows, rows] buffer.
void attention_forward(const float* q, int64_t ldq, const float* k, const float* v, int64_t head_stride, int64_t rows,
                       int n_heads, int n_kv, int hd, float* out, int64_t ldo, Stream& s);
// Backward: dq overwritten, dk / dv accumulated, probabilities recomputed.
// scratch: 2 * rows * n_heads floats (as rmsnorm_backward's).
void attention_backward(const float* q, int64_t ldq, const float* k, const float* v, int64_t head_stride, int64_t rows,
                        int n_heads, int n_kv, int hd, const float* dout, int64_t ld_do, float* dq, int64_t ld_dq, float* dk,
                        float* dv, Stream& s, float* scratch = nullptr);

// Per-row losses (float64, device [rows]) and gradients as the CPU's:
// cross entropy (targets < 0 ignored: loss 0, zero gradient row) and T^2 KL.
void cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t vocab, float scale, float* dlogits,
                   double* row_loss, Stream& s);
void kl_divergence(const float* teacher, const float* student, int64_t rows, int64_t vocab, float temperature, float scale,
                   float* dstudent, double* row_kl, Stream& s);

// AdamW as train/adamw.cpp: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// w = w * decay - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps).
void adamw(float* w, const float* g, float* m, float* v, int64_t n, float b1, float b2, float eps, float step_size,
           float inv_sqrt_bc2, float decay, Stream& s);
// Zeroes x[i] where bit i of the kept-bitmap is 0 (pruned weights, their
// gradients and moments).
void apply_mask(float* x, const uint64_t* kept, int64_t n, Stream& s);

}  // namespace condense::kernels::gpu
