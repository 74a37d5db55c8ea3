// Next-token sampling: greedy at temperature 0, else softmax(logits / T)
// restricted to the top_k most likely tokens (0: all), then to the nucleus
// (top_p) of what is left, in that order (as vLLM and llama.cpp apply them). Deterministic for a seed (xorshift64*,
// as llama2.c), independent of the platform's <random>.
#pragma once
#include <cstdint>
#include <vector>

namespace condense {

class Sampler {
 public:
  Sampler(float temperature, float top_p, uint64_t seed, int top_k = 0);
  int sample(const float* logits, int vocab);

 private:
  float uniform();
  float temperature_, top_p_;
  int top_k_;
  uint64_t state_;
  std::vector<std::pair<float, int>> buf_;
};

int argmax(const float* v, int n);

}  // namespace condense
