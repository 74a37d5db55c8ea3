// Width reduction by measured importance (Minitron-style structured pruning):
// a calibration forward ranks each layer's FFN channels (mean |silu(g) * u|),
// attention heads (mean L2 norm of the head's output before o_proj; with GQA a
// kv group's score is the sum of its query heads', and whole groups are kept or
// dropped) and the hidden channels (mean |RMSNorm output| over every norm of
// every layer); the least important are sliced away. Kept indices stay in
// their original order.
#pragma once
#include <vector>

#include "model/model.h"
#include "train/token_data.h"

namespace condense::train {

struct WidthTarget {
  int ffn_dim = 0;   // 0: keep all
  int n_heads = 0;   // must be a multiple of n_heads / n_kv_heads
  int dim = 0;
};

struct Importance {
  std::vector<std::vector<double>> ffn;    // [layer][ffn_dim]
  std::vector<std::vector<double>> group;  // [layer][n_kv_heads]
  std::vector<double> hidden;              // [dim]
};

// Runs `windows` held-in training windows of `seq` tokens through the model.
Importance measure_importance(const Model& m, const TokenDataset& data, int windows, int seq, int bos, uint64_t seed);

// A copy of m narrowed to `target` by keeping the most important channels.
Model shrink_width(const Model& m, const Importance& imp, const WidthTarget& target);

}  // namespace condense::train
