// Backward kernels of the Llama block's element-wise ops and of the loss, f32,
// raw pointers. Each takes the forward inputs it needs and the gradient of its
// output; "accumulate" outputs are added to, the rest overwritten.
#pragma once
#include <cstdint>

namespace condense::kernels {

// y = x * r * w, r = 1/sqrt(mean(x^2) + eps) per row. Writes dx [rows, dim];
// adds sum over rows of dy * x * r to dw [dim]. dx may alias dy.
void rmsnorm_backward_f32(const float* x, const float* w, const float* dy, int64_t rows, int64_t dim, float eps, float* dx,
                          float* dw_accumulate);

// h = silu(g) * u. Writes dg and du (rows x n, strides ld_gu; ld_h for dh);
// dg may alias g, du may alias u (each is read before it is written).
void silu_mul_backward_f32(const float* g, const float* u, const float* dh, int64_t rows, int64_t n, int64_t ld_gu,
                           int64_t ld_h, float* dg, float* du);

// The transpose of rope_f32's rotation, in place on dy (same layout and tables).
void rope_backward_f32(float* dy, int64_t rows, int64_t ld, int heads, int hd, int64_t pos0, const float* cos_table,
                       const float* sin_table);

// Causal GQA attention of a whole sequence (positions 0 .. rows-1), backward.
// q, dq: [rows, n_heads*hd] (strides ldq, ld_dq); k, v, dk, dv: head-major
// [n_kv][rows..][hd] with `head_stride` between kv heads; dout: [rows,
// n_heads*hd] stride ld_do. Softmax probabilities are recomputed, not stored.
// dq is overwritten; dk and dv are accumulated. Work is split by kv head, so the
// result does not depend on the thread count.
void attention_backward_f32(const float* q, int64_t ldq, const float* k, const float* v, int64_t head_stride, int64_t rows,
                            int n_heads, int n_kv, int hd, const float* dout, int64_t ld_do, float* dq, int64_t ld_dq, float* dk,
                            float* dv);

// Cross-entropy of logits [rows, vocab] against targets (ignored where target < 0).
// Returns the summed loss in float64 and writes dlogits = scale * (softmax - onehot)
// (zero rows for ignored targets); dlogits may alias logits.
double cross_entropy_f32(const float* logits, const int* targets, int64_t rows, int64_t vocab, float scale, float* dlogits);

// Distillation loss T^2 * KL(softmax(teacher / T) || softmax(student / T)) summed
// over rows, returned in float64. Writes dstudent = scale * T * (q - p) (the
// gradient of that sum times scale; may be null) and, when row_kl is not null,
// each row's unscaled KL (for evaluation: mean and tail KL to a reference).
double kl_divergence_f32(const float* teacher, const float* student, int64_t rows, int64_t vocab, float temperature, float scale,
                         float* dstudent, float* row_kl);

}  // namespace condense::kernels
