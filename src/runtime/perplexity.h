// Perplexity by condense's protocol: the whole text tokenized once (no BOS), cut
// into non-overlapping windows of ctx tokens (the last partial one dropped);
// each window is fed as [BOS] + window[:-1] and all ctx positions are scored.
// PPL = exp(mean NLL), NLL accumulated in float64.
#pragma once
#include <functional>
#include <vector>

#include "runtime/engine.h"

namespace condense {

struct PerplexityResult {
  double ppl = 0, mean_nll = 0;
  int64_t tokens_scored = 0;
  int windows = 0;
  int64_t tokens_in_text = 0;
  double seconds = 0;
};

// max_windows <= 0 scores every window. `on_window(done, total)` reports progress.
PerplexityResult evaluate_perplexity(Engine& engine, const std::vector<int>& tokens, int ctx, int max_windows,
                                     const std::function<void(int, int)>& on_window = {});

}  // namespace condense
