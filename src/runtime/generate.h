// Autoregressive generation on an Engine, with timing of the two phases.
#pragma once
#include <functional>
#include <vector>

#include "runtime/engine.h"
#include "runtime/sampler.h"

namespace condense {

struct GenerateStats {
  int prompt_tokens = 0, generated = 0, decode_steps = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  int stop_token = -1;  // the BOS/EOS token sampled that ended generation before `steps`, else -1
  double prefill_tok_s() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  // One decode step is one forward of a single token (sampling included).
  double decode_tok_s() const { return decode_seconds > 0 ? decode_steps / decode_seconds : 0; }
};

// Fails unless `prompt` (at least BOS) and `steps` (>= 1) fit the engine's
// context; `whose` names the engine in the message ("" for the model).
void check_generation(const Engine& engine, const std::vector<int>& prompt, int steps, const char* whose = "");

// Feeds `prompt` (already starting with BOS) and samples up to `steps` tokens,
// stopping early at BOS/EOS unless !stop_at_eos (then they are generated like
// any token); `on_token(prev, token)` streams each one.
GenerateStats generate(Engine& engine, const std::vector<int>& prompt, int steps, Sampler& sampler,
                       const std::function<void(int, int)>& on_token, std::vector<int>* out = nullptr, bool stop_at_eos = true);

}  // namespace condense
