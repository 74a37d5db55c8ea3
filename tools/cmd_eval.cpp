// condense eval MODEL --text FILE --ctx N: perplexity by the protocol in
// src/runtime/perplexity.h.
#include <cstdio>
#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>

#include "core/progress.h"
#include "io/file_view.h"
#include "io/model_loader.h"
#include "kernels/cpu/cpu_features.h"
#include "runtime/compare.h"
#include "runtime/perplexity.h"
#include "tools/cli_common.h"
#include "train/token_data.h"

namespace condense::cli {

namespace {
struct EvalArgs {
  ModelArgs model;
  std::string text;
  int ctx = 256;
  int max_windows = 0;
  bool json = false, log_json = false;
  std::string reference, reference_tokenizer, kv_dtype, device = "cpu";
};
}  // namespace

void register_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Perplexity of a model on a text file (non-overlapping windows of --ctx tokens)");
  auto a = std::make_shared<EvalArgs>();
  add_model_args(*cmd, a->model);
  cmd->add_option("--text", a->text, "UTF-8 text file to score")->required()->check(CLI::ExistingFile);
  cmd->add_option("--ctx", a->ctx, "Window length in tokens (each window is fed as [BOS] + window[:-1])")->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--max-windows", a->max_windows, "Score only the first K windows (0 = all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--reference", a->reference,
                  "Also score a reference model (e.g. the uncompressed one) on the same windows and report KL(reference || model) "
                  "mean and p99, top-1 agreement and the perplexity change")
      ->check(CLI::ExistingPath);
  cmd->add_option("--reference-tokenizer", a->reference_tokenizer, "Tokenizer for --reference when it carries none");
  add_device_option(*cmd, a->device);
  cmd->add_option("--kv-dtype", a->kv_dtype, "KV cache dtype of the model (not the reference): f32, f16, bf16, fp8, int8 (default: the checkpoint's calibrated fp8/int8, else f32)");
  cmd->add_flag("--json", a->json, "Print the result as one JSON object");
  cmd->add_flag("--log-json", a->log_json, "Progress as JSON lines on stderr");
  cmd->callback([a] {
    apply_threads(a->model.threads);
    const Device device = parse_device(a->device);
    LoadedModel lm = load_model(a->model.model, a->model.tokenizer, {.effective_f32 = false});
    const Tokenizer& tok = require_tokenizer(lm);
    const std::vector<int> tokens = tok.encode(read_text_file(a->text));
    Engine engine(lm.model, EngineOptions{std::min(lm.model.config.max_seq, a->ctx), 0, a->kv_dtype, 0, device});
    const std::string model_path = lm.model.path;
    release_weights(lm.model);
    std::optional<Progress> progress;  // made at the first window, when the total is known
    auto on_window = [&](int done, int total) {
      if (!progress) progress.emplace("eval", total, a->log_json);
      progress->update(done);
    };
    nlohmann::json j = {{"model", model_path}, {"text", a->text}, {"ctx", a->ctx}, {"threads", active_threads()}, {"isa", kernels::isa_name(kernels::active_isa())},
                       {"kv_dtype", kv_code_name(engine.kv().code())}, {"device", a->device}, {"weights", engine.describe_linears()}};
    if (!a->reference.empty()) {
      LoadedModel ref = load_model(a->reference, a->reference_tokenizer, {.effective_f32 = false});
      if (ref.tokenizer && train::tokenizer_fingerprint(*ref.tokenizer) != train::tokenizer_fingerprint(tok)) {
        fail("--reference", "the reference's tokenizer (" + ref.tokenizer_path + ") differs from the model's (" + lm.tokenizer_path + ")",
             "Compare models that share a tokenizer");
      }
      Engine ref_engine(ref.model, std::min(ref.model.config.max_seq, a->ctx));
      const Comparison c = compare_models(engine, ref_engine, tokens, a->ctx, a->max_windows, on_window);
      if (progress) progress->finish();
      j.update({{"reference", ref.model.path}, {"perplexity", c.ppl}, {"reference_perplexity", c.reference_ppl},
                {"delta_ppl_pct", c.delta_ppl_pct}, {"kl_mean", c.kl_mean}, {"kl_p99", c.kl_p99},
                {"top1_agreement", c.top1_agreement}, {"tokens_scored", c.tokens}, {"windows", c.windows},
                {"seconds", c.seconds}});
      if (a->json) {
        std::cout << j.dump() << "\n";
      } else {
        std::printf("perplexity %.6f  reference %.6f  (%+.3f%%)\nKL(reference || model): mean %.6f, p99 %.6f nats/token; top-1 agreement %.2f%%  (%lld tokens, %d windows of %d; %.2f s)\n",
                    c.ppl, c.reference_ppl, c.delta_ppl_pct, c.kl_mean, c.kl_p99, 100 * c.top1_agreement, (long long)c.tokens, c.windows,
                    a->ctx, c.seconds);
      }
      return;
    }
    PerplexityResult r = evaluate_perplexity(engine, tokens, a->ctx, a->max_windows, on_window);
    if (progress) progress->finish();
    j.update({{"perplexity", r.ppl},        {"mean_nll", r.mean_nll},    {"tokens_scored", r.tokens_scored},
              {"windows", r.windows},       {"tokens_in_text", r.tokens_in_text},
              {"seconds", r.seconds},       {"tokens_per_s", r.tokens_scored / r.seconds}});
    if (a->json) {
      std::cout << j.dump() << "\n";
    } else {
      std::printf("perplexity %.6f  (mean NLL %.6f over %lld tokens, %d windows of %d; %.2f s, %.0f tok/s)\n", r.ppl, r.mean_nll,
                  (long long)r.tokens_scored, r.windows, a->ctx, r.seconds, r.tokens_scored / r.seconds);
    }
  });
}

}  // namespace condense::cli
