#include "runtime/perplexity.h"

#include <chrono>
#include <cmath>

#include "core/error.h"

namespace condense {

PerplexityResult evaluate_perplexity(Engine& engine, const std::vector<int>& tokens, int ctx, int max_windows,
                                     const std::function<void(int, int)>& on_window) {
  if (ctx < 2) fail("--ctx", "must be at least 2, got " + std::to_string(ctx));
  if (ctx > engine.max_seq()) fail("--ctx", std::to_string(ctx) + " exceeds the model's context of " + std::to_string(engine.max_seq()));
  PerplexityResult r;
  r.tokens_in_text = int64_t(tokens.size());
  int total = int(tokens.size() / size_t(ctx));
  if (max_windows > 0) total = std::min(total, max_windows);
  if (total == 0) {
    fail("perplexity", "the text has " + std::to_string(tokens.size()) + " tokens, fewer than one window of " + std::to_string(ctx),
         "Use a longer text or a smaller --ctx");
  }
  const int vocab = engine.config().vocab;
  std::vector<float> logits(size_t(ctx) * size_t(vocab));
  std::vector<int> input(static_cast<size_t>(ctx));
  double nll = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int w = 0; w < total; ++w) {
    const int* win = tokens.data() + size_t(w) * size_t(ctx);
    input[0] = engine.config().bos_id;
    std::copy(win, win + ctx - 1, input.begin() + 1);
    engine.forward(input.data(), ctx, 0, logits.data(), ctx);
    for (int i = 0; i < ctx; ++i) {
      const float* l = logits.data() + size_t(i) * size_t(vocab);
      double mx = l[0];
      for (int j = 1; j < vocab; ++j) mx = std::max(mx, double(l[j]));
      double s = 0;
      for (int j = 0; j < vocab; ++j) s += std::exp(double(l[j]) - mx);
      nll += mx + std::log(s) - double(l[win[i]]);
    }
    r.tokens_scored += ctx;
    if (on_window) on_window(w + 1, total);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.windows = total;
  r.mean_nll = nll / double(r.tokens_scored);
  r.ppl = std::exp(r.mean_nll);
  return r;
}

}  // namespace condense
