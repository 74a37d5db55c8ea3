// condense bench MODEL: offline prefill / decode speed with the machine's
// bounds measured in the same run (runtime/bench_run.h; JSON: docs/BENCH.md).
#include <cstdio>
#include <iostream>
#include <optional>

#include "core/progress.h"
#include "io/atomic_writer.h"
#include "runtime/bench_run.h"
#include "tools/cli_common.h"

namespace condense::cli {

namespace {
struct BenchArgs {
  ModelArgs model;
  BenchOptions opt;
  std::string out;
  bool json = false, log_json = false;
};
}  // namespace

void register_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench",
                                 "Offline speed of a model: prefill and TTFT, decode at several batch sizes and contexts, memory, "
                                 "and the machine's bandwidth and compute bounds measured in the same run");
  auto a = std::make_shared<BenchArgs>();
  add_model_args(*cmd, a->model);
  cmd->add_option("--prefill", a->opt.prefill, "Prompt lengths to prefill")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--batch", a->opt.batches, "Sequences decoding together")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--context", a->opt.contexts, "Positions cached before decoding starts")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--decode-tokens", a->opt.decode_tokens, "Decode steps timed per batch and context")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--reps", a->opt.reps, "Prefill repetitions (best is reported)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--kv-dtype", a->opt.kv_dtype, "KV cache dtype: f32, f16, bf16, fp8, int8 (default: the checkpoint's calibrated fp8/int8, else f32)");
  cmd->add_option("--out", a->out, "Also write the JSON to this file");
  cmd->add_flag("--json", a->json, "Print the result as one JSON object on stdout");
  cmd->add_flag("--log-json", a->log_json, "Progress as JSON lines on stderr");
  cmd->callback([a] {
    apply_threads(a->model.threads);
    a->opt.tokenizer = a->model.tokenizer;
    std::optional<Progress> progress;
    const nlohmann::json j = run_bench(a->model.model, a->opt, [&](int done, int total, const std::string&) {
      if (!progress) progress.emplace("bench", total, a->log_json);
      progress->update(done);
    });
    if (progress) progress->finish();
    if (!a->out.empty()) {
      write_file_atomically(a->out, j.dump(2) + "\n");
    }
    if (a->json) {
      std::cout << j.dump() << "\n";
      return;
    }
    const auto& m = j["machine"];
    std::printf("%s  [%s, %d threads; read %.1f GB/s, FMA %.0f GFLOP/s, int8 %.0f GOPS]\n", a->model.model.c_str(),
                m["isa"].get<std::string>().c_str(), m["threads"].get<int>(), m["read_gbs"].get<double>(), m["fma_gflops"].get<double>(),
                m["int8_gops"].get<double>());
    std::printf("weights %.1f MB (%.1f MB read per decode step), KV %s %.1f KB/token, RSS after load %.1f MB, peak %.1f MB\n",
                j["model"]["weight_bytes"].get<double>() / 1e6, j["model"]["decode_weight_bytes"].get<double>() / 1e6,
                j["kv"]["dtype"].get<std::string>().c_str(), j["kv"]["bytes_per_token"].get<double>() / 1e3,
                j["memory"]["rss_after_load_bytes"].get<double>() / 1e6, j["memory"]["peak_rss_bytes"].get<double>() / 1e6);
    for (const auto& p : j["prefill"]) {
      if (p.contains("skipped")) continue;
      std::printf("prefill %5d tokens: %8.1f tok/s  (%.0f%% of the compute bound)\n", p["tokens"].get<int>(), p["tok_s"].get<double>(),
                  100 * p["fraction_of_bound"].get<double>());
    }
    std::printf("TTFT %.1f ms\n", 1e3 * j["ttft_s"].get<double>());
    for (const auto& d : j["decode"]) {
      if (d.contains("skipped")) continue;
      std::printf("decode batch %3d context %5d: %8.1f tok/s, step p50 %.2f ms  (%.0f%% of the %s bound)\n", d["batch"].get<int>(),
                  d["context"].get<int>(), d["tok_s"].get<double>(), d["step_ms_p50"].get<double>(), 100 * d["fraction_of_bound"].get<double>(),
                  d["bound"].get<std::string>().c_str());
    }
  });
}

}  // namespace condense::cli
