#include "runtime/generate.h"

#include <chrono>

#include "core/error.h"

namespace condense {

void check_generation(const Engine& engine, const std::vector<int>& prompt, int steps, const char* whose) {
  if (prompt.empty()) fail("generate", "the prompt must hold at least the BOS token");
  if (steps < 1) fail("--steps", "must be at least 1");
  if (int(prompt.size()) + steps > engine.max_seq()) {
    fail("--steps", "prompt (" + std::to_string(prompt.size()) + " tokens) + steps (" + std::to_string(steps) + ") exceeds " + whose +
                        (*whose ? " " : "the ") + "context of " + std::to_string(engine.max_seq()),
         *whose ? "Use a draft with the model's context length, or fewer steps" : "");
  }
}

GenerateStats generate(Engine& engine, const std::vector<int>& prompt, int steps, Sampler& sampler,
                       const std::function<void(int, int)>& on_token, std::vector<int>* out, bool stop_at_eos) {
  check_generation(engine, prompt, steps);
  const ModelConfig& c = engine.config();
  using clock = std::chrono::steady_clock;
  GenerateStats st;
  st.prompt_tokens = int(prompt.size());
  std::vector<float> logits(size_t(c.vocab));
  auto t0 = clock::now();
  engine.forward(prompt.data(), int(prompt.size()), 0, logits.data(), 1);
  st.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  int prev = prompt.back();
  int pos = int(prompt.size());
  t0 = clock::now();
  for (int s = 0; s < steps; ++s) {
    const int next = sampler.sample(logits.data(), c.vocab);
    if (stop_at_eos && (next == c.eos_id || next == c.bos_id)) {
      st.stop_token = next;
      break;
    }
    ++st.generated;
    if (out) out->push_back(next);
    if (on_token) on_token(prev, next);
    prev = next;
    if (s + 1 == steps) break;
    engine.forward(&next, 1, pos++, logits.data(), 1);
    ++st.decode_steps;
  }
  st.decode_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return st;
}

}  // namespace condense
