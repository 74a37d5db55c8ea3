// Model: a config plus its canonical f32 weights, named as Hugging Face names
// them. for_each_weight() is the one list of tensors that loaders, savers and
// (later) optimizers and quantizers all walk.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "model/activation_quant.h"
#include "model/kv_cache_quant.h"
#include "model/quantized_weight.h"

namespace condense {

struct LayerWeights {
  Tensor attn_norm, wq, wk, wv, wo, bq, bk, bv, ffn_norm, w_gate, w_up, w_down;
};

enum class WeightKind { Embedding, Norm, Linear, Bias, Head };

struct WeightRef {
  std::string name;  // e.g. "model.layers.3.self_attn.q_proj.weight"
  WeightKind kind;
  Shape shape;       // the shape the config implies
  int layer;         // -1 outside the blocks
  Tensor* tensor;
};

struct Model {
  ModelConfig config;
  Tensor embed;                   // [vocab, dim]
  std::vector<LayerWeights> layers;
  Tensor final_norm;              // [dim]
  Tensor lm_head;                 // [vocab, dim]; undefined when tied
  // Provenance for `info`: where it came from and how each weight was stored.
  std::string format;             // "llama2c", "hf-safetensors", "gguf", ...
  std::string path;
  bool random_init = false;
  std::map<std::string, DType> source_dtypes;
  // The file's own type where no DType names it (GGUF: "Q4_K", "Q8_0", ...).
  std::map<std::string, std::string> source_encodings;
  // Packed forms of compressed weights, by weight name (the f32 tensors hold
  // their effective values; see model/quantized_weight.h).
  std::map<std::string, WeightCompression> compression;
  // KV cache storage chosen by a calibrate_kv stage.
  KvCacheQuant kv_cache;
  // Input quantization of the block linears (W8A8), chosen by a quantize stage.
  ActivationQuant activations;
  // The recipe stages that produced this model, as a JSON array (text).
  std::string history = "[]";
  // A .cpk header's provenance object (text; "{}" otherwise): the recipe, and
  // the draft model it recorded for speculative decoding.
  std::string provenance = "{}";

  const Tensor& head() const { return config.tied_embeddings ? embed : lm_head; }
};

// Visits every weight the config calls for, in a fixed order.
void for_each_weight(Model& model, const std::function<void(const WeightRef&)>& fn);
// The same walk for readers (savers, info); `fn` must not modify the tensors.
void for_each_weight(const Model& model, const std::function<void(const WeightRef&)>& fn);
// Drops every weight (and packed form), keeping config and provenance: frees
// the originals once an Engine holds its own packed copies.
void release_weights(Model& model);
// Resizes `layers` to the config and allocates every weight as f32 (uninitialized).
void allocate_weights(Model& model);

}  // namespace condense
