#include "core/ops/transformer.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/transformer_f32.h"

namespace condense::ops {

RopeTable RopeTable::make(int max_pos, int hd, double theta) {
  RopeTable t;
  t.hd = hd;
  const int half = hd / 2;
  t.cos = Tensor::empty(DType::F32, {max_pos, half});
  t.sin = Tensor::empty(DType::F32, {max_pos, half});
  for (int p = 0; p < max_pos; ++p) {
    for (int i = 0; i < half; ++i) {
      const double a = p * std::pow(theta, -2.0 * i / hd);
      t.cos.f32()[p * half + i] = float(std::cos(a));
      t.sin.f32()[p * half + i] = float(std::sin(a));
    }
  }
  return t;
}

void rmsnorm(const Mat& x, const Tensor& w, float eps, const Mat& out) {
  check(w.numel() == x.cols && out.cols == x.cols && out.rows == x.rows && x.contiguous() && out.contiguous(), "rmsnorm",
        "x, w and out shapes do not match");
  kernels::rmsnorm_f32(x.data, w.f32(), x.rows, x.cols, eps, out.data);
}

void rope(const Mat& x, int heads, int hd, int64_t pos0, const RopeTable& t) {
  check(x.cols == int64_t(heads) * hd && t.hd == hd, "rope", "x width is not heads * head_dim");
  if (pos0 + x.rows > t.cos.dim(0)) check(false, "rope", "position " + std::to_string(pos0 + x.rows) + " is past the RoPE table");
  kernels::rope_f32(x.data, x.rows, x.ld, heads, hd, pos0, t.cos.f32(), t.sin.f32());
}

void silu_mul(const Mat& g, const Mat& u, const Mat& h) {
  check(g.rows == u.rows && g.cols == u.cols && h.rows == g.rows && h.cols == g.cols && g.ld == u.ld, "silu_mul",
        "g, u and h shapes do not match");
  kernels::silu_mul_f32(g.data, u.data, g.rows, g.cols, g.ld, h.data, h.ld);
}

void add(const Mat& x, const Mat& y) {
  check(x.rows == y.rows && x.cols == y.cols && x.contiguous() && y.contiguous(), "add", "shapes do not match");
  kernels::add_f32(x.data, y.data, x.rows * x.cols);
}

void add_bias(const Mat& x, const Tensor& b) {
  if (b.numel() != x.cols) check(false, "add_bias", "bias has " + std::to_string(b.numel()) + " values for " + std::to_string(x.cols) + " columns");
  for (int64_t r = 0; r < x.rows; ++r) kernels::add_f32(x.row(r), b.f32(), x.cols);
}

void attention_seq(const Mat& q, const float* k, const float* v, int64_t head_stride, int n_heads, int n_kv, int hd,
                   const Mat& out) {
  check(q.cols == int64_t(n_heads) * hd && out.cols == q.cols && out.rows == q.rows, "attention_seq", "q/out width mismatch");
  check(n_kv > 0 && n_heads % n_kv == 0 && head_stride >= q.rows * hd, "attention_seq",
        "n_kv must divide n_heads and each kv head hold the sequence");
  kernels::attention_f32(q.data, q.ld, k, v, head_stride, q.rows, 0, n_heads, n_kv, hd, out.data, out.ld);
}

}  // namespace condense::ops
