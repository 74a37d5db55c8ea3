// condense generate MODEL --prompt TEXT: streams a continuation, then speeds.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/model_loader.h"
#include "kernels/cpu/cpu_features.h"
#include "runtime/generate.h"
#include "runtime/speculative.h"
#include "tools/cli_common.h"

namespace condense::cli {

namespace {
struct GenerateArgs {
  ModelArgs model;
  std::string prompt;
  int steps = 256;
  float temperature = 1.0f, top_p = 0.9f;
  uint64_t seed = 0;
  std::string kv_dtype, device = "cpu";
  bool json = false, ignore_eos = false;
  std::string draft;
  int draft_k = 4, draft_k_max = 8;
  bool fixed_k = false, no_draft = false;
};
}  // namespace

void register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text from a prompt, then report prefill and decode tokens/s");
  auto a = std::make_shared<GenerateArgs>();
  add_model_args(*cmd, a->model);
  cmd->add_option("--prompt", a->prompt, "Prompt text (empty: start from BOS alone)");
  cmd->add_option("--steps", a->steps, "Tokens to generate at most (stops early at EOS)")->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", a->temperature, "0 = greedy; higher = more random")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", a->top_p, "Nucleus sampling mass in (0, 1]");
  cmd->add_option("--seed", a->seed, "Sampling seed (default: time-based)");
  cmd->add_option("--kv-dtype", a->kv_dtype, "KV cache dtype: f32, f16, bf16, fp8, int8 (default: the checkpoint's calibrated fp8/int8, else f32)");
  add_device_option(*cmd, a->device);
  cmd->add_flag("--ignore-eos", a->ignore_eos, "Generate all --steps tokens: BOS/EOS do not stop (e.g. a random model from `condense init`)");
  cmd->add_flag("--json", a->json, "After the text, print the timing as one JSON object on stdout");
  cmd->add_option("--draft", a->draft,
                  "Speculative decoding: a small model with the same vocabulary (e.g. a distilled student) proposes tokens the "
                  "model verifies; the output distribution is the model's own (greedy output is identical)");
  cmd->add_option("--draft-k", a->draft_k, "Draft tokens per round at the start (then adapted within 1..--draft-k-max)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--draft-k-max", a->draft_k_max, "Most draft tokens per round")->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_flag("--draft-fixed-k", a->fixed_k, "Keep --draft-k every round (no adaptation)");
  cmd->add_flag("--no-draft", a->no_draft,
                "Decode without the draft a .cpk records (a recipe's draft stage writes draft.cpk beside model.cpk and "
                "names it in the model's provenance; by default generate uses it)");
  cmd->callback([a] {
    apply_threads(a->model.threads);
    const Device device = parse_device(a->device);
    LoadedModel lm = load_model(a->model.model, a->model.tokenizer, {.effective_f32 = false});
    const Tokenizer& tok = require_tokenizer(lm);
    std::vector<int> prompt = {lm.model.config.bos_id};
    for (int id : tok.encode(a->prompt)) prompt.push_back(id);
    const int max_seq = std::min<int>(lm.model.config.max_seq, int(prompt.size()) + a->steps);
    Engine engine(lm.model, EngineOptions{max_seq, 0, a->kv_dtype, 0, device});
    release_weights(lm.model);  // the engine holds packed copies; free the originals
    std::unique_ptr<Engine> draft;
    SpecConfig spec;
    if (a->no_draft && !a->draft.empty()) fail("--no-draft", "contradicts --draft " + a->draft);
    if (a->draft.empty() && !a->no_draft) {
      a->draft = recorded_draft(a->model.model, lm.model);
      if (!a->draft.empty()) std::fprintf(stderr, "speculative decoding with the draft recorded in the model: %s (--no-draft: without)\n", a->draft.c_str());
    }
    if (!a->draft.empty()) {
      if (a->draft_k > a->draft_k_max) fail("--draft-k", "is more than --draft-k-max (" + std::to_string(a->draft_k_max) + ")");
      LoadedModel dm = load_model(a->draft, "", {.effective_f32 = false});
      check_draft_fits(a->draft, dm.model.config, engine.config());
      draft = std::make_unique<Engine>(dm.model, EngineOptions{std::min(dm.model.config.max_seq, max_seq), 0, "", 0, device});
      spec.k = a->draft_k;
      spec.k_max = a->draft_k_max;
      spec.adaptive = !a->fixed_k;
    }
    const uint64_t seed = a->seed ? a->seed : uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
    Sampler sampler(a->temperature, a->top_p, seed);
    std::cout << a->prompt << std::flush;
    auto print = [&](int prev, int t) { std::cout << tok.decode_token(prev, t) << std::flush; };
    SpecStats ss;
    GenerateStats st = draft ? generate_speculative(engine, *draft, prompt, a->steps, sampler, spec, print, nullptr, !a->ignore_eos, &ss)
                             : generate(engine, prompt, a->steps, sampler, print, nullptr, !a->ignore_eos);
    std::cout << std::endl;  // flush before the timing line goes to stderr
    nlohmann::json j = {{"prompt_tokens", st.prompt_tokens}, {"generated_tokens", st.generated},
                        {"prefill_tok_s", st.prefill_tok_s()}, {"decode_tok_s", st.decode_tok_s()},
                        {"prefill_s", st.prefill_seconds}, {"decode_s", st.decode_seconds},
                        {"threads", active_threads()}, {"isa", kernels::isa_name(kernels::active_isa())}, {"weight_bytes_per_token", engine.decode_weight_bytes()},
                        {"kv_dtype", kv_code_name(engine.kv().code())}, {"device", a->device},
                        {"stop", st.stop_token >= 0 ? "eos" : "length"}};
    if (draft) {
      // vLLM's names: acceptance_rate in percent, acceptance_length = 1 + accepted / drafts
      nlohmann::json per_pos = nlohmann::json::array();
      for (size_t i = 0; i < ss.proposed_per_pos.size() && ss.proposed_per_pos[i] > 0; ++i) per_pos.push_back(ss.per_position_rate(i));
      j["draft"] = a->draft;
      j["spec_decode_num_drafts"] = ss.drafts;
      j["spec_decode_draft_tokens"] = ss.draft_tokens;
      j["spec_decode_accepted_tokens"] = ss.accepted_tokens;
      j["spec_decode_acceptance_rate"] = 100.0 * ss.acceptance_rate();
      j["spec_decode_acceptance_length"] = ss.acceptance_length();
      j["spec_decode_per_position_acceptance_rates"] = per_pos;
      j["draft_time_share"] = ss.draft_seconds / std::max(1e-12, ss.draft_seconds + ss.target_seconds);
      j["target_time_share"] = ss.target_seconds / std::max(1e-12, ss.draft_seconds + ss.target_seconds);
    }
    if (st.stop_token >= 0) {
      std::fprintf(stderr, "stopped: the model sampled its %s token (id %d) after %d of %d tokens (--ignore-eos generates on)\n",
                   st.stop_token == lm.model.config.eos_id ? "end-of-sequence" : "beginning-of-sequence", st.stop_token, st.generated,
                   a->steps);
    }
    if (a->json) {
      std::cout << j.dump() << "\n";
    } else {
      std::fprintf(stderr, "prefill: %d tokens, %.1f tok/s | decode: %d tokens, %.1f tok/s | %d threads\n", st.prompt_tokens,
                   st.prefill_tok_s(), st.generated, st.decode_tok_s(), active_threads());
      if (draft) {
        std::fprintf(stderr, "speculative: %lld rounds, %lld of %lld draft tokens accepted (%.1f%%), %.2f tokens per target step, "
                             "draft time %.0f%%\n",
                     (long long)ss.drafts, (long long)ss.accepted_tokens, (long long)ss.draft_tokens, 100.0 * ss.acceptance_rate(),
                     ss.acceptance_length(), 100.0 * ss.draft_seconds / std::max(1e-12, ss.draft_seconds + ss.target_seconds));
      }
    }
  });
}

}  // namespace condense::cli
