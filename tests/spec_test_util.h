// Helpers shared by the speculative decoding tests: plain and speculative
// generation of a fixed number of tokens, and random prompts.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "runtime/generate.h"
#include "runtime/speculative.h"

namespace spectest {

inline std::vector<int> plain(condense::Engine& e, const std::vector<int>& prompt, int steps, condense::Sampler s) {
  std::vector<int> out;
  condense::generate(e, prompt, steps, s, {}, &out, false);
  return out;
}

inline std::vector<int> speculative(condense::Engine& t, condense::Engine& d, const std::vector<int>& prompt, int steps,
                                    condense::Sampler s, condense::SpecConfig cfg, condense::SpecStats* st = nullptr) {
  std::vector<int> out;
  condense::generate_speculative(t, d, prompt, steps, s, cfg, {}, &out, false, st);
  return out;
}

// n prompts: BOS and 1, 4, 7, ... random tokens in [2, vocab).
inline std::vector<std::vector<int>> prompts(int vocab, int n, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<std::vector<int>> ps;
  for (int i = 0; i < n; ++i) {
    std::vector<int> p{1};
    for (int j = 0; j < 1 + i * 3; ++j) p.push_back(int(2 + g() % uint32_t(vocab - 2)));
    ps.push_back(p);
  }
  return ps;
}

// The exact joint distribution of the 3 tokens after `prompt` under the
// target's sampler (temperature, top-k), by enumeration: p(a) p(b | a) p(c | a, b),
// indexed (a * V + b) * V + c.
inline std::vector<double> exact_joint3(const condense::Model& target, const std::vector<int>& prompt, float temperature, int top_k) {
  const int V = target.config.vocab, P = int(prompt.size());
  condense::Sampler ps(temperature, 1.f, 1, top_k);
  std::vector<double> joint(size_t(V * V * V), 0.0);
  std::vector<float> logits(static_cast<size_t>(V)), p1, p2, p3;
  condense::Engine ex(target, P + 3);
  ex.forward(prompt.data(), P, 0, logits.data(), 1);
  ps.distribution(logits.data(), V, p1);
  for (int a = 0; a < V; ++a) {
    if (p1[size_t(a)] == 0.f) continue;
    ex.forward(&a, 1, P, logits.data(), 1);
    ps.distribution(logits.data(), V, p2);
    for (int b = 0; b < V; ++b) {
      if (p2[size_t(b)] == 0.f) continue;
      ex.forward(&b, 1, P + 1, logits.data(), 1);
      ps.distribution(logits.data(), V, p3);
      for (int c = 0; c < V; ++c) joint[size_t((a * V + b) * V + c)] = double(p1[size_t(a)]) * p2[size_t(b)] * p3[size_t(c)];
    }
  }
  return joint;
}

// The chi-square statistic of `count` (n samples) against `joint`, cells
// with expected count < 5 merged, as a Wilson-Hilferty z score ((chi/dof)^(1/3)
// is close to normal with mean 1 - 2/(9 dof)); 1e9 when a sample the
// distribution cannot produce occurred. `what` goes into the log line.
inline double chi_square_z(const std::vector<double>& joint, const std::vector<int64_t>& count, int64_t n, const char* what) {
  double chi = 0, merged_e = 0, merged_o = 0;
  int cells = 0;
  for (size_t i = 0; i < joint.size(); ++i) {
    const double e = joint[i] * double(n);
    if (e < 5) {
      if (e == 0 && count[i] > 0) return 1e9;
      merged_e += e;
      merged_o += double(count[i]);
      continue;
    }
    chi += (double(count[i]) - e) * (double(count[i]) - e) / e;
    ++cells;
  }
  if (merged_e >= 5) {
    chi += (merged_o - merged_e) * (merged_o - merged_e) / merged_e;
    ++cells;
  }
  const double dof = cells - 1;
  std::fprintf(stderr, "chi-square (%s): %.1f over %d cells\n", what, chi, cells);
  return (std::cbrt(chi / dof) - (1 - 2 / (9 * dof))) / std::sqrt(2 / (9 * dof));
}

}  // namespace spectest
