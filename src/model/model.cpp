#include "model/model.h"

namespace condense {

void for_each_weight(Model& m, const std::function<void(const WeightRef&)>& fn) {
  const ModelConfig& c = m.config;
  const int64_t d = c.dim, qd = c.q_dim(), kvd = c.kv_dim(), f = c.ffn_dim;
  fn({"model.embed_tokens.weight", WeightKind::Embedding, {c.vocab, d}, -1, &m.embed});
  m.layers.resize(size_t(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& w = m.layers[size_t(l)];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    fn({p + "input_layernorm.weight", WeightKind::Norm, {d}, l, &w.attn_norm});
    fn({p + "self_attn.q_proj.weight", WeightKind::Linear, {qd, d}, l, &w.wq});
    fn({p + "self_attn.k_proj.weight", WeightKind::Linear, {kvd, d}, l, &w.wk});
    fn({p + "self_attn.v_proj.weight", WeightKind::Linear, {kvd, d}, l, &w.wv});
    if (c.qkv_bias) {
      fn({p + "self_attn.q_proj.bias", WeightKind::Bias, {qd}, l, &w.bq});
      fn({p + "self_attn.k_proj.bias", WeightKind::Bias, {kvd}, l, &w.bk});
      fn({p + "self_attn.v_proj.bias", WeightKind::Bias, {kvd}, l, &w.bv});
    }
    fn({p + "self_attn.o_proj.weight", WeightKind::Linear, {d, qd}, l, &w.wo});
    fn({p + "post_attention_layernorm.weight", WeightKind::Norm, {d}, l, &w.ffn_norm});
    fn({p + "mlp.gate_proj.weight", WeightKind::Linear, {f, d}, l, &w.w_gate});
    fn({p + "mlp.up_proj.weight", WeightKind::Linear, {f, d}, l, &w.w_up});
    fn({p + "mlp.down_proj.weight", WeightKind::Linear, {d, f}, l, &w.w_down});
  }
  fn({"model.norm.weight", WeightKind::Norm, {d}, -1, &m.final_norm});
  if (!c.tied_embeddings) fn({"lm_head.weight", WeightKind::Head, {c.vocab, d}, -1, &m.lm_head});
}

void for_each_weight(const Model& m, const std::function<void(const WeightRef&)>& fn) {
  // The walk only resizes `layers` when it disagrees with the config, which a
  // loaded or allocated model never does, so the cast changes nothing.
  for_each_weight(const_cast<Model&>(m), fn);
}

void allocate_weights(Model& m) {
  for_each_weight(m, [](const WeightRef& w) { *w.tensor = Tensor::empty(DType::F32, w.shape); });
}

std::vector<float> KvCacheQuant::layer_scales(const std::vector<float>& all, int layer, int n_kv) const {
  std::vector<float> s(static_cast<size_t>(n_kv), 1.f);
  for (int h = 0; h < n_kv; ++h) s[size_t(h)] = per_head ? all.at(size_t(layer * n_kv + h)) : all.at(size_t(layer));
  return s;
}

void release_weights(Model& m) {
  m.embed = Tensor();
  m.final_norm = Tensor();
  m.lm_head = Tensor();
  m.layers.clear();
  m.layers.shrink_to_fit();
  m.compression.clear();
}

}  // namespace condense
