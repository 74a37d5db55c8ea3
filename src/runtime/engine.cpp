#include "runtime/engine.h"

#include <cstring>

#include "core/error.h"
#include "runtime/linear_parts.h"

namespace condense {

Engine::Engine(const Model& m, int max_seq) : cfg_(m.config), max_seq_(max_seq > 0 ? max_seq : m.config.max_seq) {
  const char* kEmbed = "model.embed_tokens.weight";
  auto ec = m.compression.find(kEmbed);
  if (ec != m.compression.end() && ec->second.scheme.quantized()) {
    // A quantized table stays packed: lookups decode one row. Tied, it is the head's pack.
    embed_from_head_ = cfg_.tied_embeddings;
    if (!embed_from_head_) embed_packed_ = pack_linear(m, {{kEmbed, &m.embed}}, {cfg_.vocab}, cfg_.dim);
  } else {
    if (!m.embed.defined()) fail("engine", std::string("the embedding '") + kEmbed + "' has no values");
    embed_ = m.embed;
  }
  final_norm_ = m.final_norm;
  const int64_t d = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), f = cfg_.ffn_dim;
  for (const LayerWeights& w : m.layers) {
    Layer l;
    l.attn_norm = w.attn_norm;
    l.ffn_norm = w.ffn_norm;
    const std::string p = "model.layers." + std::to_string(layers_.size()) + ".";
    const bool a8 = m.activations.type == DType::I8;
    l.qkv = pack_linear(m, {{p + "self_attn.q_proj.weight", &w.wq}, {p + "self_attn.k_proj.weight", &w.wk}, {p + "self_attn.v_proj.weight", &w.wv}},
                        {qd, kvd, kvd}, d, a8);
    l.o = pack_linear(m, {{p + "self_attn.o_proj.weight", &w.wo}}, {d}, qd, a8);
    l.gate_up = pack_linear(m, {{p + "mlp.gate_proj.weight", &w.w_gate}, {p + "mlp.up_proj.weight", &w.w_up}}, {f, f}, d, a8);
    l.down = pack_linear(m, {{p + "mlp.down_proj.weight", &w.w_down}}, {d}, f, a8);
    if (cfg_.qkv_bias) {
      l.qkv_bias = Tensor::empty(DType::F32, {cfg_.q_dim() + 2 * kvd});
      std::memcpy(l.qkv_bias.f32(), w.bq.f32(), w.bq.nbytes());
      std::memcpy(l.qkv_bias.f32() + cfg_.q_dim(), w.bk.f32(), w.bk.nbytes());
      std::memcpy(l.qkv_bias.f32() + cfg_.q_dim() + kvd, w.bv.f32(), w.bv.nbytes());
    }
    l.kv = ops::KvCacheLayer::make(cfg_.n_kv_heads, max_seq_, cfg_.head_dim);
    if (m.kv_cache.quantized()) {
      const int li = int(layers_.size());
      l.kv.qtype = m.kv_cache.type;
      l.kv.k_scale = m.kv_cache.layer_scales(m.kv_cache.k_scales, li, cfg_.n_kv_heads);
      l.kv.v_scale = m.kv_cache.layer_scales(m.kv_cache.v_scales, li, cfg_.n_kv_heads);
    }
    if (m.activations.type == DType::F8E4M3) {
      for (int si = 0; si < ActivationQuant::kSites; ++si) l.act_scale[si] = m.activations.scale(int(layers_.size()), si);
    }
    layers_.push_back(std::move(l));
  }
  act_type_ = m.activations.type;
  head_ = pack_linear(m, {{cfg_.tied_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", &m.head()}}, {cfg_.vocab}, d);
  rope_ = ops::RopeTable::make(max_seq_, cfg_.head_dim, cfg_.rope_theta);
}

size_t Engine::decode_weight_bytes() const {
  // + one embedding row per token
  const ops::PackedLinear& table = embed_from_head_ ? head_ : embed_packed_;
  size_t b = head_.weight_bytes() + (embed_.defined() ? size_t(cfg_.dim) * 4 : table.weight_bytes() / size_t(cfg_.vocab));
  for (const Layer& l : layers_) b += l.qkv.weight_bytes() + l.o.weight_bytes() + l.gate_up.weight_bytes() + l.down.weight_bytes();
  return b;
}

void Engine::quantize_input(const Layer& l, int site, ops::Mat x, const ops::PackedLinear& consumer) const {
  // Integer kernels quantize their input rows themselves, the same way.
  if (act_type_ == DType::I8 && consumer.integer_activations()) return;
  if (act_type_ != DType::F32) fake_quant_rows(x.data, x.rows, x.cols, x.ld, act_type_, l.act_scale[site]);
}

void Engine::ensure_scratch(int n) {
  if (n <= scratch_rows_) return;
  const int64_t d = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim();
  x_ = Tensor::empty(DType::F32, {n, d});
  xn_ = Tensor::empty(DType::F32, {n, d});
  qkv_ = Tensor::empty(DType::F32, {n, qd + 2 * kvd});
  att_ = Tensor::empty(DType::F32, {n, qd});
  gu_ = Tensor::empty(DType::F32, {n, 2 * int64_t(cfg_.ffn_dim)});
  tmp_ = Tensor::empty(DType::F32, {n, d});
  scratch_rows_ = n;
}

void Engine::forward(const int* tokens, int n, int pos, float* logits, int n_logits) {
  if (n <= 0 || n_logits < 0 || n_logits > n) fail("Engine::forward", "need 0 <= n_logits <= n and n > 0");
  if (pos < 0 || pos + n > max_seq_) {
    fail("Engine::forward", "positions " + std::to_string(pos) + ".." + std::to_string(pos + n - 1) +
                                " exceed the context of " + std::to_string(max_seq_),
         "Use a shorter prompt/--ctx or a larger --max-seq");
  }
  ensure_scratch(n);
  const int64_t d = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), f = cfg_.ffn_dim;
  const int hd = cfg_.head_dim;
  ops::Mat x = ops::mat(x_).rows_slice(0, n);
  ops::Mat xn = ops::mat(xn_).rows_slice(0, n);
  ops::Mat qkv = ops::mat(qkv_).rows_slice(0, n);
  ops::Mat att = ops::mat(att_).rows_slice(0, n);
  ops::Mat gu = ops::mat(gu_).rows_slice(0, n);
  ops::Mat tmp = ops::mat(tmp_).rows_slice(0, n);

  for (int i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= cfg_.vocab) {
      fail("Engine::forward", "token id " + std::to_string(tokens[i]) + " is outside the vocabulary of " + std::to_string(cfg_.vocab));
    }
    if (embed_.defined()) std::memcpy(x.row(i), embed_.f32() + int64_t(tokens[i]) * d, size_t(d) * 4);
    else (embed_from_head_ ? head_ : embed_packed_).row(tokens[i], x.row(i));
  }
  for (Layer& l : layers_) {
    ops::rmsnorm(x, l.attn_norm, cfg_.norm_eps, xn);
    quantize_input(l, 0, xn, l.qkv);
    l.qkv.apply(xn, qkv);
    if (l.qkv_bias.defined()) ops::add_bias(qkv, l.qkv_bias);
    ops::Mat q = qkv.cols_slice(0, qd), k = qkv.cols_slice(qd, kvd), v = qkv.cols_slice(qd + kvd, kvd);
    ops::rope(q, cfg_.n_heads, hd, pos, rope_);
    ops::rope(k, cfg_.n_kv_heads, hd, pos, rope_);
    l.kv.store(k, v, pos);
    ops::attention(q, l.kv, pos, cfg_.n_heads, att);
    quantize_input(l, 1, att, l.o);
    l.o.apply(att, tmp);
    ops::add(x, tmp);
    ops::rmsnorm(x, l.ffn_norm, cfg_.norm_eps, xn);
    quantize_input(l, 2, xn, l.gate_up);
    l.gate_up.apply(xn, gu);
    ops::Mat g = gu.cols_slice(0, f), u = gu.cols_slice(f, f);
    ops::silu_mul(g, u, g);
    quantize_input(l, 3, g, l.down);
    l.down.apply(g, tmp);
    ops::add(x, tmp);
  }
  if (n_logits == 0) return;
  ops::Mat last = x.rows_slice(n - n_logits, n_logits);
  ops::Mat last_n = xn.rows_slice(0, n_logits);
  ops::rmsnorm(last, final_norm_, cfg_.norm_eps, last_n);
  head_.apply(last_n, ops::Mat{logits, n_logits, cfg_.vocab, cfg_.vocab});
}

}  // namespace condense
