// Helpers shared by the speculative decoding tests: plain and speculative
// generation of a fixed number of tokens, and random prompts.
#pragma once
#include <cstdint>
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

}  // namespace spectest
