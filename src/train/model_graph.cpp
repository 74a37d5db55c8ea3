#include "train/model_graph.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/ops/backward.h"
#include "core/ops/gemm.h"

namespace condense::train {

namespace {
Tensor buf(int64_t rows, int64_t cols) { return Tensor::empty(DType::F32, {rows, cols}); }

// y = x W^T, or y += x W^T (a residual added in the same pass)
void linear(const ops::Mat& x, Tensor& w, const ops::Mat& y, bool accumulate = false) {
  ops::matmul(x, false, ops::mat(w), true, y, 1.f, accumulate ? 1.f : 0.f);
}

// dW += dy^T x; dx (+)= dy W
void linear_backward(const ops::Mat& x, Tensor& w, const ops::Mat& dy, Tensor& dw, const ops::Mat& dx, bool accumulate_dx) {
  ops::matmul(dy, true, x, false, ops::mat(dw), 1.f, 1.f);
  ops::matmul(dy, false, ops::mat(w), false, dx, 1.f, accumulate_dx ? 1.f : 0.f);
}

void bias_backward(const ops::Mat& dy, Tensor& db) {
  float* g = db.f32();
  for (int64_t r = 0; r < dy.rows; ++r) {
    const float* d = dy.row(r);
    for (int64_t j = 0; j < dy.cols; ++j) g[j] += d[j];
  }
}
}  // namespace

ModelGraph::ModelGraph(const ModelConfig& cfg, int batch, int seq, bool keep)
    : cfg_(cfg), batch_(batch), seq_(seq), keep_(keep) {
  if (batch <= 0 || seq <= 0) fail("ModelGraph", "batch and sequence length must be positive");
  if (seq > cfg.max_seq) {
    fail("ModelGraph", "sequence length " + std::to_string(seq) + " exceeds the model's context of " + std::to_string(cfg.max_seq),
         "Use a shorter seq_len");
  }
  const int64_t n = rows(), d = cfg.dim, qd = cfg.q_dim(), kvd = cfg.kv_dim(), f = cfg.ffn_dim;
  saved_.resize(keep ? size_t(cfg.n_layers) : 1);
  for (Saved& s : saved_) {
    s.x_in = buf(n, d);
    s.xn1 = buf(n, d);
    s.q = buf(n, qd);
    s.k = buf(n, kvd);
    s.v = buf(n, kvd);
    s.att = buf(n, qd);
    s.x_mid = buf(n, d);
    s.xn2 = buf(n, d);
    s.gate = buf(n, f);
    s.up = buf(n, f);
    s.h = buf(n, f);
  }
  x_final_ = buf(n, d);
  xn_final_ = buf(n, d);
  k_rows_ = buf(n, kvd);
  v_rows_ = buf(n, kvd);
  if (keep) {
    dx_ = buf(n, d);
    dxn_ = buf(n, d);
    dh_ = buf(n, f);
    dq_ = buf(n, qd);
    dk_rows_ = buf(n, kvd);
    dv_rows_ = buf(n, kvd);
    dk_ = buf(n, kvd);
    dv_ = buf(n, kvd);
  }
  rope_ = ops::RopeTable::make(seq, cfg.head_dim, cfg.rope_theta);
}

size_t ModelGraph::activation_bytes() const {
  size_t b = 0;
  for (const Saved& s : saved_) {
    for (const Tensor* t : {&s.x_in, &s.xn1, &s.q, &s.k, &s.v, &s.att, &s.x_mid, &s.xn2, &s.gate, &s.up, &s.h}) b += t->nbytes();
  }
  for (const Tensor* t : {&x_final_, &xn_final_, &k_rows_, &v_rows_, &dx_, &dxn_, &dh_, &dq_, &dk_rows_, &dv_rows_, &dk_, &dv_}) {
    if (t->defined()) b += t->nbytes();
  }
  return b;
}

ops::Mat ModelGraph::activation(int layer, Act which) {
  if (layer < 0 || layer >= cfg_.n_layers) fail("ModelGraph::activation", "no layer " + std::to_string(layer));
  Saved& s = saved_[keep_ ? size_t(layer) : 0];
  switch (which) {
    case Act::AttnNormOut: return ops::mat(s.xn1);
    case Act::FfnNormOut: return ops::mat(s.xn2);
    case Act::Attention: return ops::mat(s.att);
    case Act::FfnHidden: return ops::mat(s.h);
    case Act::Keys: return {s.k.f32(), s.k.numel() / cfg_.head_dim, cfg_.head_dim, cfg_.head_dim};
    case Act::Values: return {s.v.f32(), s.v.numel() / cfg_.head_dim, cfg_.head_dim, cfg_.head_dim};
  }
  return {};
}

// rows [batch*seq, n_kv*hd] -> [batch][n_kv][seq][hd]
void ModelGraph::scatter_heads(const ops::Mat& r, Tensor& hm) const {
  const int hd = cfg_.head_dim, nkv = cfg_.n_kv_heads;
  float* out = hm.f32();
  for (int b = 0; b < batch_; ++b) {
    for (int t = 0; t < seq_; ++t) {
      const float* src = r.row(int64_t(b) * seq_ + t);
      for (int h = 0; h < nkv; ++h) std::memcpy(out + ((int64_t(b) * nkv + h) * seq_ + t) * hd, src + int64_t(h) * hd, size_t(hd) * 4);
    }
  }
}

void ModelGraph::gather_heads(const Tensor& hm, const ops::Mat& r) const {
  const int hd = cfg_.head_dim, nkv = cfg_.n_kv_heads;
  const float* in = hm.f32();
  for (int b = 0; b < batch_; ++b) {
    for (int t = 0; t < seq_; ++t) {
      float* dst = r.row(int64_t(b) * seq_ + t);
      for (int h = 0; h < nkv; ++h) std::memcpy(dst + int64_t(h) * hd, in + ((int64_t(b) * nkv + h) * seq_ + t) * hd, size_t(hd) * 4);
    }
  }
}

void ModelGraph::run_block(LayerWeights& w, Saved& s, Tensor& out_t) {
  const int64_t n = rows(), d = cfg_.dim, hd = cfg_.head_dim;
  const int64_t head_stride = int64_t(seq_) * hd, seq_stride = int64_t(cfg_.n_kv_heads) * head_stride;
  ops::Mat kr = ops::mat(k_rows_), vr = ops::mat(v_rows_);
  ops::Mat x = ops::mat(s.x_in), xn1 = ops::mat(s.xn1), q = ops::mat(s.q), att = ops::mat(s.att);
  ops::rmsnorm(x, w.attn_norm, cfg_.norm_eps, xn1);
  linear(xn1, w.wq, q);
  linear(xn1, w.wk, kr);
  linear(xn1, w.wv, vr);
  if (cfg_.qkv_bias) {
    ops::add_bias(q, w.bq);
    ops::add_bias(kr, w.bk);
    ops::add_bias(vr, w.bv);
  }
  for (int b = 0; b < batch_; ++b) {
    ops::rope(q.rows_slice(int64_t(b) * seq_, seq_), cfg_.n_heads, int(hd), 0, rope_);
    ops::rope(kr.rows_slice(int64_t(b) * seq_, seq_), cfg_.n_kv_heads, int(hd), 0, rope_);
  }
  scatter_heads(kr, s.k);
  scatter_heads(vr, s.v);
  for (int b = 0; b < batch_; ++b) {
    ops::attention_seq(q.rows_slice(int64_t(b) * seq_, seq_), s.k.f32() + b * seq_stride, s.v.f32() + b * seq_stride,
                       head_stride, cfg_.n_heads, cfg_.n_kv_heads, int(hd), att.rows_slice(int64_t(b) * seq_, seq_));
  }
  ops::Mat x_mid = ops::mat(s.x_mid), xn2 = ops::mat(s.xn2);
  std::memcpy(x_mid.data, x.data, size_t(n * d) * 4);
  linear(att, w.wo, x_mid, true);
  ops::rmsnorm(x_mid, w.ffn_norm, cfg_.norm_eps, xn2);
  ops::Mat gate = ops::mat(s.gate), up = ops::mat(s.up), h = ops::mat(s.h);
  linear(xn2, w.w_gate, gate);
  linear(xn2, w.w_up, up);
  ops::silu_mul(gate, up, h);
  ops::Mat out = ops::mat(out_t);
  std::memcpy(out.data, x_mid.data, size_t(n * d) * 4);
  linear(h, w.w_down, out, true);
}

ops::Mat ModelGraph::forward_block(const Model& cm, int layer, const ops::Mat& x_in) {
  if (keep_) fail("ModelGraph::forward_block", "runs on graphs built without kept activations");
  if (layer < 0 || layer >= cfg_.n_layers) fail("ModelGraph::forward_block", "no layer " + std::to_string(layer));
  ops::check(x_in.rows == rows() && x_in.cols == cfg_.dim, "forward_block", "x_in must be [batch*seq, dim]");
  ops::Mat x = ops::mat(saved_[0].x_in);
  for (int64_t r = 0; r < x.rows; ++r) std::memcpy(x.row(r), x_in.row(r), size_t(x.cols) * 4);
  run_block(const_cast<Model&>(cm).layers[size_t(layer)], saved_[0], x_final_);
  return ops::mat(x_final_);
}

ops::Mat ModelGraph::forward(const Model& cm, const int* tokens, const LayerHook& on_output) {
  Model& m = const_cast<Model&>(cm);  // forward reads weights only; ops take non-const views
  const int64_t n = rows(), d = cfg_.dim;
  tokens_.assign(tokens, tokens + n);
  ops::Mat x0 = ops::mat(saved_[0].x_in);
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= cfg_.vocab) {
      fail("ModelGraph::forward", "token id " + std::to_string(tokens[i]) + " is outside the vocabulary of " + std::to_string(cfg_.vocab));
    }
    std::memcpy(x0.row(i), m.embed.f32() + int64_t(tokens[i]) * d, size_t(d) * 4);
  }
  for (int l = 0; l < cfg_.n_layers; ++l) {
    Tensor& out_t = l + 1 < cfg_.n_layers ? saved_[keep_ ? size_t(l + 1) : 0].x_in : x_final_;
    run_block(m.layers[size_t(l)], saved_[keep_ ? size_t(l) : 0], out_t);
    if (on_output) on_output(l, ops::mat(out_t));
  }
  ops::Mat xf = ops::mat(x_final_), xnf = ops::mat(xn_final_);
  ops::rmsnorm(xf, m.final_norm, cfg_.norm_eps, xnf);
  return xnf;
}

void ModelGraph::backward(const Model& cm, const ops::Mat& d_final, Model& g, const LayerHook& inject) {
  if (!keep_) fail("ModelGraph::backward", "this graph was built without activations (a frozen model)");
  Model& m = const_cast<Model&>(cm);
  const int64_t n = rows(), hd = cfg_.head_dim;
  const int64_t head_stride = int64_t(seq_) * hd, seq_stride = int64_t(cfg_.n_kv_heads) * head_stride;
  ops::Mat dx = ops::mat(dx_), dxn = ops::mat(dxn_), dh = ops::mat(dh_), dq = ops::mat(dq_);
  ops::Mat dkr = ops::mat(dk_rows_), dvr = ops::mat(dv_rows_);
  ops::rmsnorm_backward(ops::mat(x_final_), m.final_norm, d_final, cfg_.norm_eps, dx, g.final_norm);
  for (int l = cfg_.n_layers - 1; l >= 0; --l) {
    if (inject) inject(l, dx);
    LayerWeights& w = m.layers[size_t(l)];
    LayerWeights& gw = g.layers[size_t(l)];
    Saved& s = saved_[size_t(l)];
    // FFN: out = x_mid + down(silu(gate) * up), gate/up = xn2 W^T, xn2 = norm(x_mid)
    ops::Mat gate = ops::mat(s.gate), up = ops::mat(s.up), xn2 = ops::mat(s.xn2);
    linear_backward(ops::mat(s.h), w.w_down, dx, gw.w_down, dh, false);
    ops::silu_mul_backward(gate, up, dh, gate, up);  // gate/up now hold their gradients
    linear_backward(xn2, w.w_gate, gate, gw.w_gate, dxn, false);
    linear_backward(xn2, w.w_up, up, gw.w_up, dxn, true);
    ops::rmsnorm_backward(ops::mat(s.x_mid), w.ffn_norm, dxn, cfg_.norm_eps, dxn, gw.ffn_norm);
    ops::add(dx, dxn);
    // attention: x_mid = x_in + o(attn(rope(q), rope(k), v)), q/k/v = xn1 W^T (+ b)
    ops::Mat att = ops::mat(s.att), q = ops::mat(s.q), xn1 = ops::mat(s.xn1);
    linear_backward(att, w.wo, dx, gw.wo, att, false);  // att now holds d att (last use of att)
    std::fill_n(dk_.f32(), dk_.numel(), 0.f);
    std::fill_n(dv_.f32(), dv_.numel(), 0.f);
    for (int b = 0; b < batch_; ++b) {
      const int64_t r0 = int64_t(b) * seq_;
      ops::attention_backward(q.rows_slice(r0, seq_), s.k.f32() + b * seq_stride, s.v.f32() + b * seq_stride, head_stride,
                              cfg_.n_heads, cfg_.n_kv_heads, int(hd), att.rows_slice(r0, seq_), dq.rows_slice(r0, seq_),
                              dk_.f32() + b * seq_stride, dv_.f32() + b * seq_stride);
    }
    gather_heads(dk_, dkr);
    gather_heads(dv_, dvr);
    for (int b = 0; b < batch_; ++b) {
      ops::rope_backward(dq.rows_slice(int64_t(b) * seq_, seq_), cfg_.n_heads, int(hd), 0, rope_);
      ops::rope_backward(dkr.rows_slice(int64_t(b) * seq_, seq_), cfg_.n_kv_heads, int(hd), 0, rope_);
    }
    if (cfg_.qkv_bias) {
      bias_backward(dq, gw.bq);
      bias_backward(dkr, gw.bk);
      bias_backward(dvr, gw.bv);
    }
    linear_backward(xn1, w.wq, dq, gw.wq, dxn, false);
    linear_backward(xn1, w.wk, dkr, gw.wk, dxn, true);
    linear_backward(xn1, w.wv, dvr, gw.wv, dxn, true);
    ops::rmsnorm_backward(ops::mat(s.x_in), w.attn_norm, dxn, cfg_.norm_eps, dxn, gw.attn_norm);
    ops::add(dx, dxn);
  }
  // embedding rows in token order: deterministic for any thread count
  const int64_t d = cfg_.dim;
  for (int64_t i = 0; i < n; ++i) {
    float* e = g.embed.f32() + int64_t(tokens_[size_t(i)]) * d;
    const float* r = dx.row(i);
    for (int64_t j = 0; j < d; ++j) e[j] += r[j];
  }
}

}  // namespace condense::train
