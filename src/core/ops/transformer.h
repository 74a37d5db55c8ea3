// Device-agnostic ops of a Llama block on Mats: shape checks, then one dispatch
// to kernels/cpu (or kernels/gpu). Contracts:
//   rmsnorm:   x, out: [rows, dim]; w: [dim]; out may alias x
//   rope:      x: [rows, heads*hd] in place; row r at position pos0 + r
//   silu_mul:  g, u, h: [rows, n]; h may alias g
//   add:       x += y, both [rows, cols]
//   add_bias:  x[r, :] += b for every row; b: [cols]
//   attention_seq: q: [rows, n_heads*hd]; out: [rows, n_heads*hd], must not alias q
//   (the runtime's attention over its paged cache: kernels/cpu/kv_paged.h)
#pragma once
#include <vector>

#include "core/ops/mat.h"

namespace condense::ops {

// cos/sin of pos * theta^(-2i/hd) for i < hd/2, computed in float64, stored f32.
struct RopeTable {
  Tensor cos, sin;  // [max_pos, hd/2]
  int hd = 0;
  static RopeTable make(int max_pos, int hd, double theta);
};

void rmsnorm(const Mat& x, const Tensor& w, float eps, const Mat& out);
void rope(const Mat& x, int heads, int hd, int64_t pos0, const RopeTable& table);
void silu_mul(const Mat& g, const Mat& u, const Mat& h);
void add(const Mat& x, const Mat& y);
void add_bias(const Mat& x, const Tensor& b);
// Causal attention of one whole sequence (positions 0..rows-1) whose keys and
// values are head-major [n_kv][rows..][hd], kv heads head_stride apart (training).
void attention_seq(const Mat& q, const float* k, const float* v, int64_t head_stride, int n_heads, int n_kv, int hd,
                   const Mat& out);

}  // namespace condense::ops
