#include "train/gpu_graph.h"

#ifdef CONDENSE_HAVE_GPU
#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/ops/transformer.h"
#include "kernels/gpu/train_ops.h"
#include "kernels/gpu/train_step_ops.h"
#include "kernels/gpu/transformer_ops.h"

namespace condense::train {

namespace {
gpu::DeviceBuffer fbuf(int64_t n) { return gpu::DeviceBuffer(size_t(n) * 4); }
float* F(const gpu::DeviceBuffer& b) { return b.as<float>(); }
}  // namespace

void GpuMatmul::operator()(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (!bf16_) {
    gpu::gemm_f32(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, s_);
    return;
  }
  // the stored rows of each operand: op(A) is m x k, A itself k x m when transposed
  const int64_t na = (ta ? k : m) * lda, nb = (tb ? n : k) * ldb;
  // one stream: a block given back here is reused only by later launches
  if (a16_.bytes() < size_t(na) * 2) a16_ = gpu::DeviceBuffer(size_t(na) * 2);
  if (b16_.bytes() < size_t(nb) * 2) b16_ = gpu::DeviceBuffer(size_t(nb) * 2);
  gpu::to_bf16(a, na, a16_.as<uint16_t>(), s_);
  gpu::to_bf16(b, nb, b16_.as<uint16_t>(), s_);
  gpu::gemm_bf16(ta, tb, m, n, k, alpha, a16_.as<uint16_t>(), lda, b16_.as<uint16_t>(), ldb, beta, c, ldc, s_);
}

GpuGraph::GpuGraph(const ModelConfig& cfg, int batch, int seq, bool keep, GpuMatmul& mm, gpu::Stream& s)
    : cfg_(cfg), batch_(batch), seq_(seq), keep_(keep), mm_(mm), s_(s) {
  if (batch <= 0 || seq <= 0) fail("GpuGraph", "batch and sequence length must be positive");
  if (seq > cfg.max_seq) {
    fail("GpuGraph", "sequence length " + std::to_string(seq) + " exceeds the model's context of " + std::to_string(cfg.max_seq),
         "Use a shorter seq_len");
  }
  const int64_t n = rows(), d = cfg.dim, qd = cfg.q_dim(), kvd = cfg.kv_dim(), f = cfg.ffn_dim;
  saved_.resize(keep ? size_t(cfg.n_layers) : 1);
  for (Saved& sv : saved_) {
    sv.x_in = fbuf(n * d);
    sv.xn1 = fbuf(n * d);
    sv.q = fbuf(n * qd);
    sv.k = fbuf(n * kvd);
    sv.v = fbuf(n * kvd);
    sv.att = fbuf(n * qd);
    sv.x_mid = fbuf(n * d);
    sv.xn2 = fbuf(n * d);
    sv.gate = fbuf(n * f);
    sv.up = fbuf(n * f);
    sv.h = fbuf(n * f);
  }
  x_final_ = fbuf(n * d);
  xn_final_ = fbuf(n * d);
  k_rows_ = fbuf(n * kvd);
  v_rows_ = fbuf(n * kvd);
  if (keep) {
    dx_ = fbuf(n * d);
    dxn_ = fbuf(n * d);
    dh_ = fbuf(n * f);
    dq_ = fbuf(n * qd);
    dk_rows_ = fbuf(n * kvd);
    dv_rows_ = fbuf(n * kvd);
    dk_ = fbuf(n * kvd);
    dv_ = fbuf(n * kvd);
    scratch_ = fbuf(std::max<int64_t>(n * d, 2 * int64_t(seq) * cfg.n_heads));
  }
  // row r is at position r % seq: every sequence of the batch starts at 0
  std::vector<int32_t> pos(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) pos[size_t(r)] = int32_t(r % seq);
  pos_ = gpu::upload(pos.data(), pos.size() * 4, s);
  const ops::RopeTable rope = ops::RopeTable::make(seq, cfg.head_dim, cfg.rope_theta);
  cos_ = gpu::upload(rope.cos.f32(), rope.cos.nbytes(), s);
  sin_ = gpu::upload(rope.sin.f32(), rope.sin.nbytes(), s);
}

size_t GpuGraph::activation_bytes() const {
  size_t b = 0;
  for (const Saved& sv : saved_) {
    for (const gpu::DeviceBuffer* t : {&sv.x_in, &sv.xn1, &sv.q, &sv.k, &sv.v, &sv.att, &sv.x_mid, &sv.xn2, &sv.gate, &sv.up, &sv.h}) {
      b += t->bytes();
    }
  }
  for (const gpu::DeviceBuffer* t : {&x_final_, &xn_final_, &k_rows_, &v_rows_, &dx_, &dxn_, &dh_, &dq_, &dk_rows_, &dv_rows_, &dk_,
                                     &dv_, &scratch_}) {
    b += t->bytes();
  }
  return b;
}

void GpuGraph::run_block(const GpuLayer& w, Saved& sv, float* out) {
  const int64_t n = rows(), d = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), f = cfg_.ffn_dim;
  const int hd = cfg_.head_dim;
  const int64_t head_stride = int64_t(seq_) * hd, seq_stride = int64_t(cfg_.n_kv_heads) * head_stride;
  float *x = F(sv.x_in), *xn1 = F(sv.xn1), *q = F(sv.q), *kr = F(k_rows_), *vr = F(v_rows_), *att = F(sv.att);
  gpu::rmsnorm(x, d, n, d, w.attn_norm, cfg_.norm_eps, xn1, d, s_);
  mm_(false, true, n, qd, d, 1.f, xn1, d, w.wq, d, 0.f, q, qd);
  mm_(false, true, n, kvd, d, 1.f, xn1, d, w.wk, d, 0.f, kr, kvd);
  mm_(false, true, n, kvd, d, 1.f, xn1, d, w.wv, d, 0.f, vr, kvd);
  if (cfg_.qkv_bias) {
    gpu::add_bias(q, qd, n, qd, w.bq, s_);
    gpu::add_bias(kr, kvd, n, kvd, w.bk, s_);
    gpu::add_bias(vr, kvd, n, kvd, w.bv, s_);
  }
  gpu::rope(q, qd, n, 0, cfg_.n_heads, hd, pos_.as<int32_t>(), F(cos_), F(sin_), s_);
  gpu::rope(kr, kvd, n, 0, cfg_.n_kv_heads, hd, pos_.as<int32_t>(), F(cos_), F(sin_), s_);
  gpu::rows_to_heads(kr, batch_, seq_, cfg_.n_kv_heads, hd, F(sv.k), s_);
  gpu::rows_to_heads(vr, batch_, seq_, cfg_.n_kv_heads, hd, F(sv.v), s_);
  for (int b = 0; b < batch_; ++b) {
    const int64_t r0 = int64_t(b) * seq_;
    gpu::attention_forward(q + r0 * qd, qd, F(sv.k) + b * seq_stride, F(sv.v) + b * seq_stride, head_stride, seq_, cfg_.n_heads,
                           cfg_.n_kv_heads, hd, att + r0 * qd, qd, s_);
  }
  float* x_mid = F(sv.x_mid);
  gpu::copy_d2d(x_mid, x, size_t(n * d) * 4, s_);
  mm_(false, true, n, d, qd, 1.f, att, qd, w.wo, qd, 1.f, x_mid, d);
  gpu::rmsnorm(x_mid, d, n, d, w.ffn_norm, cfg_.norm_eps, F(sv.xn2), d, s_);
  mm_(false, true, n, f, d, 1.f, F(sv.xn2), d, w.w_gate, d, 0.f, F(sv.gate), f);
  mm_(false, true, n, f, d, 1.f, F(sv.xn2), d, w.w_up, d, 0.f, F(sv.up), f);
  gpu::silu_mul(F(sv.gate), f, F(sv.up), f, n, f, F(sv.h), f, s_);
  gpu::copy_d2d(out, x_mid, size_t(n * d) * 4, s_);
  mm_(false, true, n, d, f, 1.f, F(sv.h), f, w.w_down, f, 1.f, out, d);
}

float* GpuGraph::forward(const GpuModel& w, const int32_t* tokens, const int* host_tokens, const Hook& on_output) {
  const int64_t n = rows(), d = cfg_.dim;
  gpu::gather_rows(w.embed, d, tokens, n, F(saved_[0].x_in), s_);
  for (int l = 0; l < cfg_.n_layers; ++l) {
    float* out = l + 1 < cfg_.n_layers ? F(saved_[keep_ ? size_t(l + 1) : 0].x_in) : F(x_final_);
    run_block(w.layers[size_t(l)], saved_[keep_ ? size_t(l) : 0], out);
    if (on_output) on_output(l, out);
  }
  gpu::rmsnorm(F(x_final_), d, n, d, w.final_norm, cfg_.norm_eps, F(xn_final_), d, s_);
  if (keep_) {
    // the embedding gradient's grouping: rows sorted by (id, row)
    positions_.resize(size_t(n));
    std::iota(positions_.begin(), positions_.end(), 0);
    std::stable_sort(positions_.begin(), positions_.end(), [&](int32_t a, int32_t b) { return host_tokens[a] < host_tokens[b]; });
    unique_.clear();
    offsets_.clear();
    for (int64_t i = 0; i < n; ++i) {
      const int id = host_tokens[positions_[size_t(i)]];
      if (unique_.empty() || unique_.back() != id) {
        unique_.push_back(id);
        offsets_.push_back(int32_t(i));
      }
    }
    offsets_.push_back(int32_t(n));
    if (!d_positions_.data()) {
      d_positions_ = gpu::DeviceBuffer(size_t(n) * 4);
      d_unique_ = gpu::DeviceBuffer(size_t(n) * 4);
      d_offsets_ = gpu::DeviceBuffer(size_t(n + 1) * 4);
    }
    // the caller synchronizes the stream before these host vectors change again
    gpu::copy_h2d(d_positions_.data(), positions_.data(), positions_.size() * 4, s_);
    gpu::copy_h2d(d_unique_.data(), unique_.data(), unique_.size() * 4, s_);
    gpu::copy_h2d(d_offsets_.data(), offsets_.data(), offsets_.size() * 4, s_);
  }
  return F(xn_final_);
}

void GpuGraph::backward(const GpuModel& w, float* d_final, const GpuModel& g, const Hook& inject) {
  if (!keep_) fail("GpuGraph::backward", "this graph was built without activations (a frozen model)");
  const int64_t n = rows(), d = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), f = cfg_.ffn_dim;
  const int hd = cfg_.head_dim;
  const int64_t head_stride = int64_t(seq_) * hd, seq_stride = int64_t(cfg_.n_kv_heads) * head_stride;
  float *dx = F(dx_), *dxn = F(dxn_), *dh = F(dh_), *dq = F(dq_), *dkr = F(dk_rows_), *dvr = F(dv_rows_), *scr = F(scratch_);
  // dW += dy^T x; dx (+)= dy W, for y = x W^T with W [out, in]
  auto linear_backward = [&](const float* x, int64_t in, const float* W, const float* dy, int64_t out, float* dW, float* dxo,
                             bool accumulate) {
    mm_(true, false, out, in, n, 1.f, dy, out, x, in, 1.f, dW, in);
    mm_(false, false, n, in, out, 1.f, dy, out, W, in, accumulate ? 1.f : 0.f, dxo, in);
  };
  gpu::rmsnorm_backward(F(x_final_), w.final_norm, d_final, n, d, cfg_.norm_eps, dx, g.final_norm, s_, scr);
  for (int l = cfg_.n_layers - 1; l >= 0; --l) {
    if (inject) inject(l, dx);
    const GpuLayer& lw = w.layers[size_t(l)];
    const GpuLayer& gw = g.layers[size_t(l)];
    Saved& sv = saved_[size_t(l)];
    float *gate = F(sv.gate), *up = F(sv.up), *xn2 = F(sv.xn2);
    linear_backward(F(sv.h), f, lw.w_down, dx, d, gw.w_down, dh, false);
    gpu::silu_mul_backward(gate, up, dh, n, f, f, f, gate, up, s_);  // gate/up now hold their gradients
    linear_backward(xn2, d, lw.w_gate, gate, f, gw.w_gate, dxn, false);
    linear_backward(xn2, d, lw.w_up, up, f, gw.w_up, dxn, true);
    gpu::rmsnorm_backward(F(sv.x_mid), lw.ffn_norm, dxn, n, d, cfg_.norm_eps, dxn, gw.ffn_norm, s_, scr);
    gpu::add(dx, d, dxn, d, n, d, s_);
    float *att = F(sv.att), *q = F(sv.q), *xn1 = F(sv.xn1);
    linear_backward(att, qd, lw.wo, dx, d, gw.wo, att, false);  // att now holds d att (its last use)
    gpu::memset_async(dk_.data(), 0, dk_.bytes(), s_);
    gpu::memset_async(dv_.data(), 0, dv_.bytes(), s_);
    for (int b = 0; b < batch_; ++b) {
      const int64_t r0 = int64_t(b) * seq_;
      gpu::attention_backward(q + r0 * qd, qd, F(sv.k) + b * seq_stride, F(sv.v) + b * seq_stride, head_stride, seq_, cfg_.n_heads,
                              cfg_.n_kv_heads, hd, att + r0 * qd, qd, dq + r0 * qd, qd, F(dk_) + b * seq_stride,
                              F(dv_) + b * seq_stride, s_, scr);
    }
    gpu::heads_to_rows(F(dk_), batch_, seq_, cfg_.n_kv_heads, hd, dkr, s_);
    gpu::heads_to_rows(F(dv_), batch_, seq_, cfg_.n_kv_heads, hd, dvr, s_);
    for (int b = 0; b < batch_; ++b) {
      const int64_t r0 = int64_t(b) * seq_;
      gpu::rope_backward(dq + r0 * qd, seq_, qd, cfg_.n_heads, hd, 0, F(cos_), F(sin_), s_);
      gpu::rope_backward(dkr + r0 * kvd, seq_, kvd, cfg_.n_kv_heads, hd, 0, F(cos_), F(sin_), s_);
    }
    if (cfg_.qkv_bias) {
      gpu::column_sums_add(dq, n, qd, gw.bq, s_);
      gpu::column_sums_add(dkr, n, kvd, gw.bk, s_);
      gpu::column_sums_add(dvr, n, kvd, gw.bv, s_);
    }
    linear_backward(xn1, d, lw.wq, dq, qd, gw.wq, dxn, false);
    linear_backward(xn1, d, lw.wk, dkr, kvd, gw.wk, dxn, true);
    linear_backward(xn1, d, lw.wv, dvr, kvd, gw.wv, dxn, true);
    gpu::rmsnorm_backward(F(sv.x_in), lw.attn_norm, dxn, n, d, cfg_.norm_eps, dxn, gw.attn_norm, s_, scr);
    gpu::add(dx, d, dxn, d, n, d, s_);
  }
  gpu::scatter_add_rows(dx, d, d_unique_.as<int32_t>(), d_offsets_.as<int32_t>(), d_positions_.as<int32_t>(),
                        int64_t(unique_.size()), g.embed, s_);
}

}  // namespace condense::train
#endif  // CONDENSE_HAVE_GPU
