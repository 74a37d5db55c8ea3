// Engine: runs a Model's forward pass on the CPU with a KV cache. One code path
// serves prefill/evaluation (many tokens, GEMMs) and decoding (one token, GEMV):
// forward() takes n tokens at positions pos .. pos+n-1 and needs the cache to
// hold 0 .. pos-1. Not thread-safe: one Engine per sequence.
#pragma once
#include <vector>

#include "core/ops/linear.h"
#include "core/ops/transformer.h"
#include "model/model.h"

namespace condense {

class Engine {
 public:
  // Packs the weights (the Model may be dropped afterwards). max_seq <= 0 uses
  // the config's; the KV cache is allocated for that many positions.
  explicit Engine(const Model& model, int max_seq = 0);

  const ModelConfig& config() const { return cfg_; }
  int max_seq() const { return max_seq_; }
  // Writes logits [n_logits, vocab] for the last n_logits of the n tokens.
  void forward(const int* tokens, int n, int pos, float* logits, int n_logits);
  // Bytes of weights one decode step reads.
  size_t decode_weight_bytes() const;

 private:
  struct Layer {
    Tensor attn_norm, ffn_norm, qkv_bias;  // qkv_bias undefined unless config.qkv_bias
    ops::PackedLinear qkv, o, gate_up, down;
    ops::KvCacheLayer kv;
    float act_scale[ActivationQuant::kSites] = {1, 1, 1, 1};  // static fp8 input scales
  };
  // Applies the model's activation quantization to the input of site `site`
  // (read by `consumer`), unless the consumer's kernels quantize it themselves.
  void quantize_input(const Layer& l, int site, ops::Mat x, const ops::PackedLinear& consumer) const;
  void ensure_scratch(int n);

  ModelConfig cfg_;
  int max_seq_;
  Tensor embed_, final_norm_;             // embed_ undefined when the table is quantized:
  ops::PackedLinear embed_packed_;        // then rows come from here (or from head_ when tied)
  bool embed_from_head_ = false;
  std::vector<Layer> layers_;
  ops::PackedLinear head_;
  ops::RopeTable rope_;
  DType act_type_ = DType::F32;
  int scratch_rows_ = 0;
  Tensor x_, xn_, qkv_, att_, gu_, tmp_;
};

}  // namespace condense
