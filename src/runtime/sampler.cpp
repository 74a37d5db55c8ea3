#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace condense {

int argmax(const float* v, int n) { return int(std::max_element(v, v + n) - v); }

Sampler::Sampler(float temperature, float top_p, uint64_t seed, int top_k)
    : temperature_(temperature), top_p_(top_p), top_k_(top_k), state_(seed ? seed : 0x9E3779B97F4A7C15ull) {
  if (top_k < 0) fail("top_k", "must be >= 0 (0: no limit)");
  if (!(temperature >= 0.f)) fail("--temperature", "must be >= 0");
  if (!(top_p > 0.f && top_p <= 1.f)) fail("--top-p", "must be in (0, 1]");
}

float Sampler::uniform() {
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  return float((state_ * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

size_t Sampler::filter(const float* logits, int vocab, double& mass) {
  const float mx = *std::max_element(logits, logits + vocab);
  buf_.resize(size_t(vocab));
  double sum = 0;
  for (int i = 0; i < vocab; ++i) {
    buf_[size_t(i)] = {std::exp((logits[i] - mx) / temperature_), i};
    sum += buf_[size_t(i)].first;
  }
  size_t n = size_t(vocab);
  mass = sum;
  auto by_prob = [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  bool sorted = false;  // buf_[0, n) in decreasing probability
  if (top_k_ > 0 && size_t(top_k_) < n) {
    n = size_t(top_k_);
    std::partial_sort(buf_.begin(), buf_.begin() + std::ptrdiff_t(n), buf_.end(), by_prob);
    sorted = true;
    mass = 0;
    for (size_t i = 0; i < n; ++i) mass += buf_[i].first;
  }
  if (top_p_ < 1.f) {
    if (!sorted) std::sort(buf_.begin(), buf_.end(), by_prob);
    const double limit = top_p_ * mass;
    double cum = 0;
    size_t kept = 0;
    while (kept < n) {
      cum += buf_[kept++].first;
      if (cum >= limit) break;
    }
    n = kept;
    mass = cum;
  }
  return n;
}

int Sampler::sample(const float* logits, int vocab) {
  if (temperature_ == 0.f) return argmax(logits, vocab);
  double mass = 0;
  const size_t n = filter(logits, vocab, mass);
  const double r = uniform() * mass;
  double cum = 0;
  for (size_t i = 0; i < n; ++i) {
    cum += buf_[i].first;
    if (r < cum) return buf_[i].second;
  }
  return buf_[n - 1].second;
}

void Sampler::distribution(const float* logits, int vocab, std::vector<float>& probs) {
  probs.assign(size_t(vocab), 0.f);
  if (temperature_ == 0.f) {
    probs[size_t(argmax(logits, vocab))] = 1.f;
    return;
  }
  double mass = 0;
  const size_t n = filter(logits, vocab, mass);
  for (size_t i = 0; i < n; ++i) probs[size_t(buf_[i].second)] = float(buf_[i].first / mass);
}

int Sampler::sample_weights(const float* w, int n) {
  double total = 0;
  for (int i = 0; i < n; ++i) total += w[i];
  if (!(total > 0)) fail("Sampler::sample_weights", "the weights sum to zero");
  const double r = uniform() * total;
  double cum = 0;
  int last = 0;
  for (int i = 0; i < n; ++i) {
    if (w[i] <= 0.f) continue;
    cum += w[i];
    last = i;
    if (r < cum) return i;
  }
  return last;
}

}  // namespace condense
