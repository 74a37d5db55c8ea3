// condense generate MODEL --prompt TEXT: streams a continuation, then speeds.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "io/model_loader.h"
#include "kernels/cpu/cpu_features.h"
#include "runtime/generate.h"
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
    const uint64_t seed = a->seed ? a->seed : uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
    Sampler sampler(a->temperature, a->top_p, seed);
    std::cout << a->prompt << std::flush;
    GenerateStats st = generate(engine, prompt, a->steps, sampler,
                                [&](int prev, int t) { std::cout << tok.decode_token(prev, t) << std::flush; }, nullptr, !a->ignore_eos);
    std::cout << std::endl;  // flush before the timing line goes to stderr
    nlohmann::json j = {{"prompt_tokens", st.prompt_tokens}, {"generated_tokens", st.generated},
                        {"prefill_tok_s", st.prefill_tok_s()}, {"decode_tok_s", st.decode_tok_s()},
                        {"prefill_s", st.prefill_seconds}, {"decode_s", st.decode_seconds},
                        {"threads", active_threads()}, {"isa", kernels::isa_name(kernels::active_isa())}, {"weight_bytes_per_token", engine.decode_weight_bytes()},
                        {"kv_dtype", kv_code_name(engine.kv().code())}, {"device", a->device},
                        {"stop", st.stop_token >= 0 ? "eos" : "length"}};
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
    }
  });
}

}  // namespace condense::cli
