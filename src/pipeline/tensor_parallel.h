// Splitting a model for N-way tensor parallelism (Megatron's layout, as vLLM
// shards Llama) and putting it back:
//   q / k / v (and their biases), gate, up  by output rows: whole heads, and
//       whole GQA groups (a rank's query heads use only its kv heads)
//   o, down                                 by input columns
//   embedding, LM head                      by vocabulary rows
//   norms                                   replicated
// Packed weights split with their values: per-row scales and zero points go
// with their rows, column splits keep whole groups (a split that would cut a
// group is refused), per-channel and per-tensor scales of a column split are
// replicated; sparsity masks follow their elements; per-kv-head KV scales go
// with their heads. Each rank is a model of its own (a config with n_heads/N,
// n_kv_heads/N, ffn/N, vocab/N), so it is written as a .cpk.
#pragma once
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "model/model.h"

namespace condense::pipeline {

// How each weight is split ("rows", "cols", "replicated"), by canonical name.
nlohmann::json tp_split_table(const Model& m);
// The N rank models; Error naming the weight or config field that does not divide.
std::vector<Model> split_tensor_parallel(const Model& m, int n);
// The ranks put back together into the model of `full` (the original config);
// replicated tensors must agree across ranks (Error naming the first that does not).
Model merge_tensor_parallel(const std::vector<Model>& ranks, const ModelConfig& full);

}  // namespace condense::pipeline
