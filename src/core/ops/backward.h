// Backward ops of the Llama block and the losses, on Mats (shape checks, then one
// dispatch). Same conventions as kernels/cpu/transformer_backward_f32.h:
//   rmsnorm_backward:   dx = d/dx (dx may alias dy); dw accumulated
//   silu_mul_backward:  dg, du overwritten (may alias g, u)
//   rope_backward:      in place on dy
//   attention_backward: one sequence at positions 0..rows-1; k, v, dk, dv head-major
//                       [n_kv][rows][hd] at k_stride apart; dq overwritten, dk dv accumulated
//   cross_entropy:      returns the summed NLL; dlogits = scale (softmax - onehot), may alias
//   kl_divergence:      returns sum T^2 KL(p_teacher || q_student); dstudent = scale * gradient
#pragma once
#include "core/ops/mat.h"

namespace condense::ops {

void rmsnorm_backward(const Mat& x, const Tensor& w, const Mat& dy, float eps, const Mat& dx, Tensor& dw);
void silu_mul_backward(const Mat& g, const Mat& u, const Mat& dh, const Mat& dg, const Mat& du);
struct RopeTable;
void rope_backward(const Mat& dy, int heads, int hd, int64_t pos0, const RopeTable& table);
void attention_backward(const Mat& q, const float* k, const float* v, int64_t head_stride, int n_heads, int n_kv, int hd,
                        const Mat& dout, const Mat& dq, float* dk, float* dv);
double cross_entropy(const Mat& logits, const int* targets, float scale, const Mat& dlogits);
double kl_divergence(const Mat& teacher, const Mat& student, float temperature, float scale, const Mat* dstudent);

}  // namespace condense::ops
