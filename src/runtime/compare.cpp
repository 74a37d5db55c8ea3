#include "runtime/compare.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace condense {

namespace {
int argmax(const float* l, int n) { return int(std::max_element(l, l + n) - l); }
}  // namespace

void log_softmax64(const float* l, int n, std::vector<double>& out) {
  double mx = l[0];
  for (int j = 1; j < n; ++j) mx = std::max(mx, double(l[j]));
  double s = 0;
  for (int j = 0; j < n; ++j) s += std::exp(double(l[j]) - mx);
  const double lse = mx + std::log(s);
  for (int j = 0; j < n; ++j) out[size_t(j)] = double(l[j]) - lse;
}

Comparison compare_models(Engine& model, Engine& reference, const std::vector<int>& tokens, int ctx, int max_windows,
                          const std::function<void(int, int)>& on_window) {
  const ModelConfig& c = model.config();
  if (c.vocab != reference.config().vocab) {
    fail("--reference", "the reference has " + std::to_string(reference.config().vocab) + " tokens but the model " + std::to_string(c.vocab),
         "Compare models that share a tokenizer");
  }
  if (ctx < 2) fail("--ctx", "must be at least 2");
  if (ctx > model.max_seq() || ctx > reference.max_seq()) fail("--ctx", std::to_string(ctx) + " exceeds a model's context");
  int total = int(tokens.size() / size_t(ctx));
  if (max_windows > 0) total = std::min(total, max_windows);
  if (total == 0) fail("compare", "the text has fewer tokens than one window of " + std::to_string(ctx), "Use a longer text or a smaller --ctx");
  const int vocab = c.vocab;
  std::vector<float> lm(size_t(ctx) * size_t(vocab)), lr(lm.size());
  std::vector<double> pm(static_cast<size_t>(vocab)), pr(static_cast<size_t>(vocab));
  std::vector<int> input(static_cast<size_t>(ctx));
  std::vector<double> kls;
  double nll_m = 0, nll_r = 0;
  int64_t agree = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int w = 0; w < total; ++w) {
    const int* win = tokens.data() + size_t(w) * size_t(ctx);
    input[0] = c.bos_id;
    std::copy(win, win + ctx - 1, input.begin() + 1);
    model.forward(input.data(), ctx, 0, lm.data(), ctx);
    reference.forward(input.data(), ctx, 0, lr.data(), ctx);
    for (int i = 0; i < ctx; ++i) {
      const float* a = lm.data() + size_t(i) * size_t(vocab);
      const float* b = lr.data() + size_t(i) * size_t(vocab);
      log_softmax64(a, vocab, pm);
      log_softmax64(b, vocab, pr);
      double kl = 0;
      for (int j = 0; j < vocab; ++j) kl += std::exp(pr[size_t(j)]) * (pr[size_t(j)] - pm[size_t(j)]);
      kls.push_back(std::max(kl, 0.0));
      nll_m -= pm[size_t(win[i])];
      nll_r -= pr[size_t(win[i])];
      agree += argmax(a, vocab) == argmax(b, vocab);
    }
    if (on_window) on_window(w + 1, total);
  }
  Comparison r;
  r.windows = total;
  r.tokens = int64_t(kls.size());
  r.ppl = std::exp(nll_m / double(r.tokens));
  r.reference_ppl = std::exp(nll_r / double(r.tokens));
  r.delta_ppl_pct = 100.0 * (r.ppl / r.reference_ppl - 1.0);
  double s = 0;
  for (double k : kls) s += k;
  r.kl_mean = s / double(r.tokens);
  std::sort(kls.begin(), kls.end());
  r.kl_p99 = kls[std::min(kls.size() - 1, size_t(std::ceil(0.99 * double(kls.size()))) - 1)];
  r.top1_agreement = double(agree) / double(r.tokens);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace condense
