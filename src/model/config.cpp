#include "model/config.h"

#include "core/error.h"

namespace condense {

void ModelConfig::validate(const std::string& where) const {
  auto positive = [&](const char* field, int v) {
    if (v <= 0) fail(where, std::string("config field '") + field + "' must be positive, got " + std::to_string(v));
  };
  if (arch != "llama") {
    fail(where, "architecture '" + arch + "' is not supported", "condense supports the Llama family (llama, mistral, qwen2)");
  }
  positive("dim", dim);
  positive("n_layers", n_layers);
  positive("n_heads", n_heads);
  positive("n_kv_heads", n_kv_heads);
  positive("head_dim", head_dim);
  positive("ffn_dim", ffn_dim);
  positive("vocab", vocab);
  positive("max_seq", max_seq);
  // Upper limits far above any released Llama-family model, so a few bytes of a
  // hostile file cannot ask for terabytes (or overflow n_params()) before the
  // loader compares the config with the tensors it holds.
  auto at_most = [&](const char* field, int v, int limit) {
    if (v > limit) fail(where, std::string("config field '") + field + "' is " + std::to_string(v) + ", above the limit of " + std::to_string(limit));
  };
  at_most("dim", dim, kMaxDim);
  at_most("n_layers", n_layers, kMaxLayers);
  at_most("n_heads", n_heads, kMaxHeads);
  at_most("n_kv_heads", n_kv_heads, n_heads);
  at_most("head_dim", head_dim, kMaxHeadDim);
  at_most("ffn_dim", ffn_dim, kMaxFfn);
  at_most("vocab", vocab, kMaxVocab);
  at_most("max_seq", max_seq, kMaxSeq);
  if (int64_t(n_heads) * head_dim > kMaxDim) fail(where, "n_heads * head_dim (" + std::to_string(int64_t(n_heads) * head_dim) + ") is above the limit of " + std::to_string(kMaxDim));
  if (n_heads % n_kv_heads != 0) {
    fail(where, "config field 'n_kv_heads' (" + std::to_string(n_kv_heads) + ") must divide 'n_heads' (" +
                    std::to_string(n_heads) + ")");
  }
  if (head_dim % 2 != 0) fail(where, "config field 'head_dim' must be even for RoPE, got " + std::to_string(head_dim));
  if (!(rope_theta > 0.f)) fail(where, "config field 'rope_theta' must be positive");
  if (!(norm_eps > 0.f)) fail(where, "config field 'norm_eps' must be positive");
  if (bos_id < 0 || bos_id >= vocab) fail(where, "config field 'bos_id' is outside the vocabulary");
  if (eos_id < 0 || eos_id >= vocab) fail(where, "config field 'eos_id' is outside the vocabulary");
}

int64_t ModelConfig::n_params() const {
  const int64_t d = dim, qd = q_dim(), kvd = kv_dim(), f = ffn_dim;
  int64_t per_layer = 2 * d + d * qd + 2 * d * kvd + qd * d + 3 * d * f;
  if (qkv_bias) per_layer += qd + 2 * kvd;
  return int64_t(vocab) * d * (tied_embeddings ? 1 : 2) + d + n_layers * per_layer;
}

std::string ModelConfig::summary() const {
  return arch + " dim=" + std::to_string(dim) + " layers=" + std::to_string(n_layers) + " heads=" +
         std::to_string(n_heads) + " kv_heads=" + std::to_string(n_kv_heads) + " head_dim=" + std::to_string(head_dim) +
         " ffn=" + std::to_string(ffn_dim) + " vocab=" + std::to_string(vocab) + " max_seq=" + std::to_string(max_seq) +
         " rope_theta=" + std::to_string(rope_theta) + " norm_eps=" + std::to_string(norm_eps) +
         (tied_embeddings ? " tied" : " untied") + (qkv_bias ? " qkv_bias" : "");
}

}  // namespace condense
