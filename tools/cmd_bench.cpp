// condense bench MODEL: offline prefill / decode speed with the machine's
// bounds measured in the same run (runtime/bench_run.h); with --server URL or
// --model MODEL, latency and throughput under load (tools/bench_load.h).
// JSON: docs/BENCH.md.
#include <cstdio>
#include <iostream>
#include <optional>

#include "core/error.h"
#include "core/progress.h"
#include "io/atomic_writer.h"
#include "runtime/bench_run.h"
#include "tools/bench_load.h"
#include "tools/cli_common.h"

namespace condense::cli {

namespace {
struct BenchArgs {
  ModelArgs model;
  BenchOptions opt;
  std::string out;
  bool json = false, log_json = false;
  BenchLoadArgs load;
  std::string device = "cpu";
};
}  // namespace

void register_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench",
                                 "Speed of a model. Offline (MODEL): prefill and TTFT, decode at several batch sizes and contexts, memory, "
                                 "and the machine's bandwidth and compute bounds measured in the same run. Under load (--server URL or "
                                 "--model MODEL): requests at a rate or concurrency, TTFT/TPOT/ITL/E2E percentiles and throughput with "
                                 "vLLM's `bench serve` key names");
  auto a = std::make_shared<BenchArgs>();
  cmd->add_option("model", a->model.model,
                  "Model for the offline benchmark: a condense .cpk, a llama2.c .bin, a Hugging Face folder or a .gguf file");
  cmd->add_option("--tokenizer", a->model.tokenizer, "Tokenizer file for formats that carry none (and to cut --dataset text for --server)");
  add_threads_option(*cmd, a->model.threads);
  BenchLoadArgs& l = a->load;
  const char* load_group = "Under load";
  cmd->add_option("--server", l.server, "Load mode: an OpenAI-compatible server, http://HOST:PORT[/v1] (condense serve, llama.cpp, vLLM)")->group(load_group);
  cmd->add_option("--model", l.model, "Load mode: this model in-process (the serving scheduler, no HTTP)")->group(load_group);
  cmd->add_option("--bound-model", l.bound_model,
                  "--server: the model the server runs, loaded here to add the kernels' bound (machine limits measured in this run) to each run")
      ->group(load_group);
  cmd->add_option("--served-model-name", l.served_name, "The server's model id (default: the first of its /v1/models)")->group(load_group);
  cmd->add_option("--api-key", l.api_key, "Bearer key for the server")->envname("OPENAI_API_KEY")->group(load_group);
  cmd->add_option("--num-prompts", l.load.num_prompts, "Requests per run")->check(CLI::Range(1, 1000000))->group(load_group);
  cmd->add_option("--request-rate", l.request_rate, "Requests per second, gamma/Poisson arrivals ('inf': all at once)")->group(load_group);
  cmd->add_option("--burstiness", l.load.burstiness, "Gamma shape of the arrival gaps (1 = Poisson; lower = burstier)")->check(CLI::PositiveNumber)->group(load_group);
  cmd->add_option("--max-concurrency", l.load.max_concurrency, "Requests in flight at most (0: no limit)")->check(CLI::NonNegativeNumber)->group(load_group);
  cmd->add_option("--sweep", l.sweep, "Several runs in one JSON: concurrency=1,4,16,64 or rate=1,2,4")->group(load_group);
  cmd->add_option("--input-len", l.input_len, "Prompt tokens (BOS included)")->check(CLI::Range(1, 1 << 20))->group(load_group);
  cmd->add_option("--output-len", l.load.output_len, "max_tokens of each request")->check(CLI::Range(1, 1 << 20))->group(load_group);
  cmd->add_option("--dataset", l.dataset, "Prompts from this text file's windows of --input-len tokens (default: synthetic token ids)")->group(load_group);
  cmd->add_flag("--ignore-eos", l.load.ignore_eos, "Generate --output-len tokens whatever the model samples")->group(load_group);
  cmd->add_option("--temperature", l.load.temperature, "Sampling temperature of the requests")->check(CLI::NonNegativeNumber)->group(load_group);
  cmd->add_option("--warmups", l.load.warmups, "Requests run one at a time before the timed run")->check(CLI::NonNegativeNumber)->group(load_group);
  cmd->add_option("--seed", l.load.seed, "Seed of the prompts, arrivals and sampling")->group(load_group);
  cmd->add_option("--percentiles", l.percentiles, "Percentiles reported for ttft, tpot, itl, e2el")->group(load_group);
  cmd->add_option("--slo", l.slo, "Goodput SLOs in ms, e.g. ttft:500,tpot:50 (also e2el)")->group(load_group);
  cmd->add_option("--price-per-hour", l.load.price_per_hour, "Dollars per hour of the machine: adds dollars per million output tokens")
      ->check(CLI::NonNegativeNumber)->group(load_group);
  cmd->add_flag("--save-detailed", l.save_detailed, "Keep per-request arrays (ttfts, itls, latencies, ...) in the JSON")->group(load_group);
  cmd->add_option("--max-batch-tokens", l.sched.max_batch_tokens, "--model: tokens per engine step")->check(CLI::Range(1, 1 << 20))->group(load_group);
  cmd->add_option("--max-seqs", l.sched.max_seqs, "--model: sequences running at once")->check(CLI::Range(1, 1 << 16))->group(load_group);
  cmd->add_option("--kv-memory", l.kv_memory, "--model: KV cache pool size")->group(load_group);
  cmd->add_option("--kv-blocks", l.kv_blocks, "--model: KV cache pool in 16-position blocks")->check(CLI::Range(int64_t(1), int64_t(1) << 31))->group(load_group);
  cmd->add_option("--prefill", a->opt.prefill, "Prompt lengths to prefill")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--batch", a->opt.batches, "Sequences decoding together")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--context", a->opt.contexts, "Positions cached before decoding starts")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--decode-tokens", a->opt.decode_tokens, "Decode steps timed per batch and context")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--reps", a->opt.reps, "Prefill repetitions (best is reported)")->capture_default_str()->check(CLI::PositiveNumber);
  add_device_option(*cmd, a->device);
  cmd->add_option("--kv-dtype", a->opt.kv_dtype, "KV cache dtype: f32, f16, bf16, fp8, int8 (default: the checkpoint's calibrated fp8/int8, else f32)");
  cmd->add_option("--draft", a->opt.draft,
                  "Offline: also time speculative decoding at batch 1 with this draft model against plain decoding (greedy and "
                  "T = 1; JSON \"speculative\"). With --model: the in-process scheduler speculates with it (each run's JSON gets "
                  "vLLM's spec_decode_* numbers; docs/SPECULATIVE.md)");
  cmd->add_option("--draft-steps", a->opt.draft_steps, "Offline with --draft: tokens generated per prompt")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--out", a->out, "Also write the JSON to this file");
  cmd->add_flag("--json", a->json, "Print the result as one JSON object on stdout");
  cmd->add_flag("--log-json", a->log_json, "Progress as JSON lines on stderr");
  cmd->callback([a] {
    apply_threads(a->model.threads);
    if (!a->load.server.empty() || !a->load.model.empty()) {
      if (!a->model.model.empty()) fail("bench", "give MODEL (offline) or --server/--model (under load), not both");
      if (!a->opt.draft.empty() && !a->load.server.empty()) {
        fail("--draft", "a server chooses its own draft (condense serve --draft); the load JSON reports its spec_decode counters");
      }
      a->load.draft = a->opt.draft;
      a->load.tokenizer = a->model.tokenizer;
      a->load.kv_dtype = a->opt.kv_dtype;
      a->load.device = a->device;
      a->load.out = a->out;
      a->load.json = a->json;
      a->load.log_json = a->log_json;
      run_bench_load(a->load);
      return;
    }
    if (a->model.model.empty()) fail("bench", "give a MODEL (offline benchmark), or --server URL / --model MODEL (under load)");
    a->opt.tokenizer = a->model.tokenizer;
    a->opt.device = parse_device(a->device);
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
    if (j.contains("speculative")) {
      for (const char* k : {"greedy", "sampled_t1"}) {
        const auto& s = j["speculative"][k];
        std::printf("speculative (%s, batch 1): %.1f tok/s vs %.1f plain (x%.2f), acceptance %.1f%%, %.2f tokens per target step\n",
                    k, s["tok_s"].get<double>(), s["plain_tok_s"].get<double>(), s["speedup"].get<double>(),
                    s["spec_decode_acceptance_rate"].get<double>(), s["spec_decode_acceptance_length"].get<double>());
      }
    }
  });
}

}  // namespace condense::cli
