// Timing plain against speculative decoding on the same prompts, for
// `condense bench --draft` and bench/bench_speculative: every prompt decodes
// `steps` tokens (EOS does not stop, so both do the same work), sequence 0 of
// each engine, best of `reps` by generated tokens per second over the decode
// phase.
#pragma once
#include <nlohmann/json.hpp>
#include <vector>

#include "runtime/engine.h"
#include "runtime/speculative.h"

namespace condense {

struct SpecPoint {
  double seconds = 0;   // decode phase, summed over the prompts
  int64_t tokens = 0;   // generated after each prompt's first (plain) or all (speculative)
  SpecStats spec;       // summed over the prompts (speculative only)
  double tok_s() const { return seconds > 0 ? double(tokens) / seconds : 0.0; }
};

// draft null: plain decoding.
SpecPoint time_generation(Engine& target, Engine* draft, const std::vector<std::vector<int>>& prompts, int steps, int reps,
                          float temperature, const SpecConfig& cfg);

// {tok_s, speedup, spec_decode_* (vLLM's names; acceptance_rate in percent), draft/target time shares}.
nlohmann::json spec_point_json(const SpecPoint& spec, const SpecPoint& plain);

}  // namespace condense
