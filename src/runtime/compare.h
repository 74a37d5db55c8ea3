// Quality of a model against a reference model on the perplexity protocol's
// windows (runtime/perplexity.h): both score the same windows; per token the
// KL divergence KL(reference || model) of the next-token distributions and
// whether their top-1 tokens agree. Everything accumulates in float64.
#pragma once
#include <functional>
#include <vector>

#include "runtime/engine.h"

namespace condense {

struct Comparison {
  double ppl = 0, reference_ppl = 0;
  double delta_ppl_pct = 0;         // 100 * (ppl / reference_ppl - 1)
  double kl_mean = 0, kl_p99 = 0;   // nats per token
  double top1_agreement = 0;        // fraction of positions with the same argmax
  int64_t tokens = 0;
  int windows = 0;
  double seconds = 0;
};

// log-softmax of one row of n logits, in float64 (out holds n values).
void log_softmax64(const float* logits, int n, std::vector<double>& out);

Comparison compare_models(Engine& model, Engine& reference, const std::vector<int>& tokens, int ctx, int max_windows,
                          const std::function<void(int, int)>& on_window = {});

}  // namespace condense
