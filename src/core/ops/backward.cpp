#include "core/ops/backward.h"

#include "core/ops/transformer.h"
#include "kernels/cpu/transformer_backward_f32.h"

namespace condense::ops {

void rmsnorm_backward(const Mat& x, const Tensor& w, const Mat& dy, float eps, const Mat& dx, Tensor& dw) {
  check(w.numel() == x.cols && dw.numel() == x.cols && dy.rows == x.rows && dy.cols == x.cols && dx.rows == x.rows &&
            dx.cols == x.cols && x.contiguous() && dy.contiguous() && dx.contiguous(),
        "rmsnorm_backward", "x, w, dy, dx and dw shapes do not match");
  kernels::rmsnorm_backward_f32(x.data, w.f32(), dy.data, x.rows, x.cols, eps, dx.data, dw.f32());
}

void silu_mul_backward(const Mat& g, const Mat& u, const Mat& dh, const Mat& dg, const Mat& du) {
  check(g.rows == u.rows && g.cols == u.cols && dh.rows == g.rows && dh.cols == g.cols && dg.rows == g.rows &&
            dg.cols == g.cols && du.rows == g.rows && du.cols == g.cols && g.ld == u.ld && dg.ld == g.ld && du.ld == g.ld,
        "silu_mul_backward", "g, u, dh, dg and du shapes do not match (g, u, dg, du share one row stride)");
  kernels::silu_mul_backward_f32(g.data, u.data, dh.data, g.rows, g.cols, g.ld, dh.ld, dg.data, du.data);
}

void rope_backward(const Mat& dy, int heads, int hd, int64_t pos0, const RopeTable& t) {
  check(dy.cols == int64_t(heads) * hd && t.hd == hd, "rope_backward", "dy width is not heads * head_dim");
  check(pos0 + dy.rows <= t.cos.dim(0), "rope_backward", "position " + std::to_string(pos0 + dy.rows) + " is past the RoPE table");
  kernels::rope_backward_f32(dy.data, dy.rows, dy.ld, heads, hd, pos0, t.cos.f32(), t.sin.f32());
}

void attention_backward(const Mat& q, const float* k, const float* v, int64_t head_stride, int n_heads, int n_kv, int hd,
                        const Mat& dout, const Mat& dq, float* dk, float* dv) {
  check(q.cols == int64_t(n_heads) * hd && dout.rows == q.rows && dout.cols == q.cols && dq.rows == q.rows && dq.cols == q.cols,
        "attention_backward", "q, dout and dq shapes do not match");
  check(n_kv > 0 && n_heads % n_kv == 0 && head_stride >= q.rows * hd, "attention_backward",
        "n_kv must divide n_heads and each kv head hold the sequence");
  kernels::attention_backward_f32(q.data, q.ld, k, v, head_stride, q.rows, n_heads, n_kv, hd, dout.data, dout.ld, dq.data,
                                  dq.ld, dk, dv);
}

double cross_entropy(const Mat& logits, const int* targets, float scale, const Mat& dlogits) {
  check(logits.contiguous() && dlogits.contiguous() && dlogits.rows == logits.rows && dlogits.cols == logits.cols,
        "cross_entropy", "logits and dlogits must be contiguous and of one shape");
  return kernels::cross_entropy_f32(logits.data, targets, logits.rows, logits.cols, scale, dlogits.data);
}

double kl_divergence(const Mat& teacher, const Mat& student, float temperature, float scale, const Mat* dstudent) {
  check(teacher.contiguous() && student.contiguous() && teacher.rows == student.rows && teacher.cols == student.cols &&
            (!dstudent || (dstudent->contiguous() && dstudent->rows == student.rows && dstudent->cols == student.cols)),
        "kl_divergence", "teacher and student logits must be contiguous and of one shape (same vocabulary)");
  check(temperature > 0, "kl_divergence", "temperature must be positive");
  return kernels::kl_divergence_f32(teacher.data, student.data, student.rows, student.cols, temperature, scale,
                                    dstudent ? dstudent->data : nullptr, nullptr);
}

}  // namespace condense::ops
