// Next-token sampling: greedy at temperature 0, else softmax(logits / T)
// restricted to the top_k most likely tokens (0: all), then to the nucleus
// (top_p) of what is left, in that order (as vLLM and llama.cpp apply them). Deterministic for a seed (xorshift64*,
// as llama2.c), independent of the platform's <random>.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace condense {

class Sampler {
 public:
  Sampler(float temperature, float top_p, uint64_t seed, int top_k = 0);
  int sample(const float* logits, int vocab);

  // What sample() draws from, as probabilities [vocab] summing to 1 (0 outside
  // the top-k / nucleus); at temperature 0 one-hot at the argmax. Speculative
  // decoding compares the target's and the draft's.
  void distribution(const float* logits, int vocab, std::vector<float>& probs);
  // A draw from nonnegative weights w[0, n) (not necessarily normalised; their
  // sum must be > 0), and a uniform draw in [0, 1), from this sampler's stream.
  int sample_weights(const float* w, int n);
  float uniform();
  bool greedy() const { return temperature_ == 0.f; }

 private:
  // Fills buf_ with (exp((logit - max) / T), id) and keeps the top-k / nucleus
  // in buf_[0, n); returns n and their sum in mass.
  size_t filter(const float* logits, int vocab, double& mass);
  float temperature_, top_p_;
  int top_k_;
  uint64_t state_;
  std::vector<std::pair<float, int>> buf_;
};

int argmax(const float* v, int n);

}  // namespace condense
