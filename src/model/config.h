// The canonical Llama-family model description. Every loader maps its format
// onto this; anything it cannot express is rejected at load with the field named.
#pragma once
#include <cstdint>
#include <string>

namespace condense {

// Limits validate() enforces (far above released models; see config.cpp).
constexpr int kMaxDim = 1 << 16, kMaxLayers = 1 << 10, kMaxHeads = 1 << 10, kMaxHeadDim = 1 << 10, kMaxFfn = 1 << 19,
              kMaxVocab = 1 << 22, kMaxSeq = 1 << 20;

struct ModelConfig {
  std::string arch = "llama";  // the only family supported so far
  int dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;            // n_heads * head_dim may differ from dim
  int ffn_dim = 0;
  int vocab = 0;
  int max_seq = 0;
  float rope_theta = 10000.f;
  float norm_eps = 1e-5f;
  bool tied_embeddings = true;
  bool qkv_bias = false;       // Qwen2-style biases on q, k and v
  int bos_id = 1;
  int eos_id = 2;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  // Throws condense::Error naming the first field that is out of range;
  // `where` (a file path) prefixes the message.
  void validate(const std::string& where) const;
  int64_t n_params() const;
  std::string summary() const;
};

}  // namespace condense
