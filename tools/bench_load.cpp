#include "tools/bench_load.h"

#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "core/process_stats.h"
#include "core/progress.h"
#include "io/atomic_writer.h"
#include "io/model_loader.h"
#include "io/file_view.h"
#include "runtime/bench_run.h"
#include "tools/cli_common.h"

namespace condense::cli {

namespace {

using json = nlohmann::json;

// Models without a tokenizer (from `condense init`) still run in-process: prompts are token ids.
class NoTokenizer : public Tokenizer {
 public:
  explicit NoTokenizer(int vocab) : vocab_(vocab) {}
  std::vector<int> encode(const std::string&) const override { fail("bench", "this model has no tokenizer: pass --tokenizer for --dataset"); }
  std::string decode_token(int, int) const override { return ""; }
  int vocab_size() const override { return vocab_; }
  std::string kind() const override { return "none"; }

 private:
  int vocab_;
};

std::vector<double> parse_list(const std::string& s, const std::string& option) {
  std::vector<double> v;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    try {
      size_t used = 0;
      v.push_back(part == "inf" ? INFINITY : std::stod(part, &used));
      if (part != "inf" && used != part.size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      fail(option, "'" + part + "' is not a number");
    }
    if (!(v.back() > 0)) fail(option, "'" + part + "' must be > 0");
  }
  if (v.empty()) fail(option, "is empty");
  return v;
}

// Prompts from a text file: consecutive windows of input_len tokens (BOS first).
std::vector<LoadPrompt> text_prompts(const std::string& path, const Tokenizer& tok, int bos, int n, int input_len, bool as_text) {
  const std::vector<int> ids = tok.encode(read_text_file(path));
  const int per = input_len - 1;
  if (per < 1 || int(ids.size()) < per) fail("--dataset", path + " has " + std::to_string(ids.size()) + " tokens: fewer than one prompt of --input-len");
  std::vector<LoadPrompt> out;
  for (int i = 0; i < n; ++i) {
    const size_t at = (size_t(i) * size_t(per)) % (ids.size() - size_t(per) + 1);
    LoadPrompt p;
    p.tokens.push_back(bos);
    p.tokens.insert(p.tokens.end(), ids.begin() + std::ptrdiff_t(at), ids.begin() + std::ptrdiff_t(at + size_t(per)));
    p.input_len = input_len;
    if (as_text) p.text = tok.decode(std::vector<int>(p.tokens.begin() + 1, p.tokens.end()));
    out.push_back(std::move(p));
  }
  return out;
}

// What the engine's kernels allow for this mix, measured now on the engine
// itself: per concurrency c, c prompts of input_len tokens and output_len
// decode steps of c sequences (at the mean context) take c * prefill +
// output_len * step(c) seconds for c * output_len output tokens.
json engine_capacity(Engine& e, int input_len, int output_len, const std::vector<int>& concurrencies) {
  json out = json::object();
  const double prefill = time_prefill(e, input_len, 3);
  out["prefill_s"] = prefill;
  json steps = json::object();
  for (int c : concurrencies) {
    const double step = time_decode_step(e, c, input_len + output_len / 2, 24);
    steps[std::to_string(c)] = {{"step_s", step},
                                {"output_tok_s", double(c) * output_len / (double(c) * prefill + double(output_len) * step)}};
  }
  out["by_concurrency"] = steps;
  return out;
}

}  // namespace

void run_bench_load(BenchLoadArgs& a) {
  if (!a.server.empty() && !a.model.empty()) fail("bench", "--server and --model are exclusive: one target per run");
  LoadTestOptions& lo = a.load;
  lo.request_rate = parse_list(a.request_rate, "--request-rate").at(0);
  lo.percentiles = parse_list(a.percentiles, "--percentiles");
  for (double q : lo.percentiles) {
    if (q > 100) fail("--percentiles", "must be in (0, 100]");
  }
  if (!a.slo.empty()) lo.slo = parse_slo(a.slo);
  // The runs: one, or one per --sweep value.
  std::string sweep_kind;
  std::vector<double> sweep_values = {0};
  if (!a.sweep.empty()) {
    const size_t eq = a.sweep.find('=');
    sweep_kind = eq == std::string::npos ? "" : a.sweep.substr(0, eq);
    if (sweep_kind != "concurrency" && sweep_kind != "rate") fail("--sweep", "'" + a.sweep + "' is not concurrency=N,N,... or rate=R,R,...");
    sweep_values = parse_list(a.sweep.substr(eq + 1), "--sweep");
  }

  int n_prompts = lo.num_prompts;  // distinct prompts: enough for the largest run
  if (sweep_kind == "concurrency") {
    for (double v : sweep_values) n_prompts = std::max(n_prompts, 2 * int(v));
  }

  // The concurrencies whose engine capacity is measured (fixed-concurrency runs only).
  std::vector<int> capacity_c;
  if (sweep_kind == "concurrency") {
    for (double v : sweep_values) capacity_c.push_back(int(v));
  } else if (sweep_kind.empty() && lo.max_concurrency > 0) {
    capacity_c.push_back(lo.max_concurrency);
  }

  json doc = bench_header("load");

  std::unique_ptr<LoadTarget> target;
  std::vector<LoadPrompt> prompts;
  // In-process: the model, its engine and scheduler live for the whole run.
  std::optional<LoadedModel> lm;
  std::unique_ptr<Tokenizer> own_tok;
  std::unique_ptr<Engine> engine, draft;
  std::unique_ptr<Scheduler> sched;
  std::optional<DecodeBounds> bounds;
  if (!a.model.empty()) {
    lm.emplace(load_model(a.model, a.tokenizer, {.effective_f32 = false}));
    const ModelConfig cfg = lm->model.config;
    const Tokenizer* tok = lm->tokenizer.get();
    if (!tok) tok = (own_tok = std::make_unique<NoTokenizer>(cfg.vocab)).get();
    const Device device = parse_device(a.device);
    EngineOptions eo{cfg.max_seq, a.kv_blocks, a.kv_dtype, a.kv_blocks > 0 ? 0 : parse_bytes(a.kv_memory, "--kv-memory"), device};
    engine = std::make_unique<Engine>(lm->model, eo);
    doc["model"] = {{"path", a.model}, {"format", lm->model.format}, {"dim", cfg.dim}, {"n_layers", cfg.n_layers}, {"vocab", cfg.vocab},
                    {"params", cfg.n_params()}, {"weight_bytes", engine->weight_bytes()}, {"decode_weight_bytes", engine->decode_weight_bytes()},
                    {"linears", engine->describe_linears()}};
    release_weights(lm->model);
    malloc_trim(0);
    if (device == Device::CPU) {
      bounds = measure_decode_bounds(*engine, omp_get_max_threads(), a.probe_bytes);
      doc["machine"] = bounds->machine;
    } else {
      // The CPU's limits say nothing about a GPU run; its own are bench/gpu_kernels' (HBM bandwidth).
      doc["machine"] = {{"device", engine->describe_linears()}, {"bounds", "not measured for GPU runs"}};
    }
    doc["kv"] = {{"dtype", kv_code_name(engine->kv().code())}, {"bytes_per_token", engine->kv().bytes_per_token()},
                 {"pool_bytes", engine->kv().bytes()}, {"block_tokens", kKvBlockTokens}};
    if (!capacity_c.empty()) doc["engine_capacity"] = engine_capacity(*engine, a.input_len, lo.output_len, capacity_c);
    if (!a.draft.empty()) {
      LoadedModel dm = load_model(a.draft, "", {.effective_f32 = false});
      check_draft_fits(a.draft, dm.model.config, cfg);
      draft = std::make_unique<Engine>(dm.model, EngineOptions{std::min(dm.model.config.max_seq, engine->max_seq()),
                                                               engine->kv().total_blocks() + a.sched.max_seqs, "", 0, device});
      doc["draft"] = {{"path", a.draft}, {"n_layers", dm.model.config.n_layers}, {"params", dm.model.config.n_params()}};
    }
    sched = std::make_unique<Scheduler>(*engine, *tok, a.sched, draft.get(), SpecConfig{});
    doc["scheduler"] = {{"max_batch_tokens", a.sched.max_batch_tokens}, {"max_seqs", a.sched.max_seqs}, {"max_queue", a.sched.max_queue}};
    target = engine_target(*sched);
    if (lo.output_len + a.input_len > cfg.max_seq) {
      fail("--output-len", "input (" + std::to_string(a.input_len) + ") + output (" + std::to_string(lo.output_len) +
                               ") tokens exceed the model's context of " + std::to_string(cfg.max_seq));
    }
    prompts = a.dataset.empty() ? synthetic_prompts(n_prompts, a.input_len, cfg.bos_id, 3, cfg.vocab, lo.seed)
                                : text_prompts(a.dataset, *tok, cfg.bos_id, n_prompts, a.input_len, false);
  } else if (!a.server.empty()) {
    target = http_target(a.server, a.served_name, a.api_key);
    if (!a.bound_model.empty()) {
      // The same model the server runs, packed here only to count its
      // multiply-adds and bytes; the machine's limits are measured now, on
      // the machine the server shares with this client.
      LoadedModel bm = load_model(a.bound_model, a.tokenizer, {.effective_f32 = false});
      const ModelConfig cfg = bm.model.config;
      const int cmax = capacity_c.empty() ? 1 : *std::max_element(capacity_c.begin(), capacity_c.end());
      const int positions = std::min(cfg.max_seq, a.input_len + lo.output_len);
      Engine e(bm.model, EngineOptions{cfg.max_seq, int64_t(cmax + 1) * ((positions + kKvBlockTokens - 1) / kKvBlockTokens + 1), a.kv_dtype});
      doc["model"] = {{"path", a.bound_model}, {"format", bm.model.format}, {"dim", cfg.dim}, {"n_layers", cfg.n_layers}, {"vocab", cfg.vocab},
                      {"params", cfg.n_params()}, {"weight_bytes", e.weight_bytes()}, {"decode_weight_bytes", e.decode_weight_bytes()},
                      {"linears", e.describe_linears()}};
      bounds = measure_decode_bounds(e, omp_get_max_threads(), a.probe_bytes);
      // The KV bytes per token assume the server's cache has this run's --kv-dtype (default: the checkpoint's, as the server's).
      doc["machine"] = bounds->machine;
      doc["kv"] = {{"dtype", kv_code_name(e.kv().code())}, {"bytes_per_token", e.kv().bytes_per_token()}, {"assumed", true}};
      if (!capacity_c.empty()) doc["engine_capacity"] = engine_capacity(e, a.input_len, lo.output_len, capacity_c);
    }
    if (a.dataset.empty()) {
      // Token ids 3..258 are the byte tokens of llama-family vocabularies: valid on any of them.
      prompts = synthetic_prompts(n_prompts, a.input_len, 1, 3, 259, lo.seed);
    } else {
      if (a.tokenizer.empty()) fail("--dataset", "with --server, pass --tokenizer (the server's) to cut the text into --input-len token windows");
      auto tok = load_tokenizer_file(a.tokenizer);
      prompts = text_prompts(a.dataset, *tok, 1, n_prompts, a.input_len, true);
    }
  } else {
    fail("bench", "give a MODEL (offline benchmark), or --server URL / --model MODEL (under load)");
  }
  doc["target"] = target->describe();
  doc["config"] = {{"num_prompts", lo.num_prompts}, {"input_len", a.input_len}, {"output_len", lo.output_len}, {"dataset", a.dataset},
                   {"ignore_eos", lo.ignore_eos}, {"temperature", lo.temperature}, {"warmups", lo.warmups}, {"seed", lo.seed},
                   {"slo", {{"ttft_ms", lo.slo.ttft_ms}, {"tpot_ms", lo.slo.tpot_ms}, {"e2el_ms", lo.slo.e2el_ms}}},
                   {"price_per_hour", lo.price_per_hour}, {"threads", active_threads()}};

  json runs = json::array();
  for (double v : sweep_values) {
    LoadTestOptions o = lo;
    if (sweep_kind == "concurrency") {
      o.max_concurrency = int(v);
      o.num_prompts = std::max(o.num_prompts, 2 * o.max_concurrency);  // every slot busy twice over, so the run is not all ramp
    }
    if (sweep_kind == "rate") o.request_rate = v;
    std::ostringstream vs;
    vs << v;  // 16, 0.5, inf
    const std::string label = sweep_kind.empty() ? "load" : sweep_kind + " " + vs.str();
    std::optional<Progress> progress;
    json run = run_load(*target, prompts, o, [&](int done, int total) {
      if (!progress) progress.emplace("bench " + label, total, a.log_json);
      progress->update(done);
    });
    if (progress) progress->finish();
    if (bounds && run["total_output_tokens"].get<int64_t>() > 0) {
      // The machine's limit for this mix (a roofline per phase): each request's
      // prompt at the compute peak, then output_len decode steps of C
      // sequences, each taking the longer of C tokens at the compute peak and
      // the weights plus C sequences' KV (at the mean context) at the measured
      // bandwidth. Attention's arithmetic is not counted; its KV reads are.
      const double n = run["completed"].get<double>();
      const double in = run["total_input_tokens"].get<double>() / n, out = run["total_output_tokens"].get<double>() / n;
      const int conc = o.max_concurrency > 0 ? std::min(o.max_concurrency, o.num_prompts) : run["max_concurrent_requests"].get<int>();
      const double c = std::max(1, conc), t = bounds->compute_s_per_token, ctx = in + out / 2;
      const double step_compute = c * t, step_memory = (bounds->decode_weight_bytes + c * ctx * bounds->kv_bytes_per_token) / (bounds->limits.read_gbs * 1e9);
      const double bound = c * out / (c * in * t + out * std::max(step_compute, step_memory));
      run["compute_bound_output_tok_s"] = out / ((in + out) * t);
      run["bandwidth_bound_output_tok_s"] = c / step_memory;
      run["bound_output_tok_s"] = bound;
      run["bound"] = step_memory >= step_compute ? "bandwidth" : "compute";  // what limits a decode step
      run["fraction_of_bound"] = run["output_throughput"].get<double>() / bound;
    }
    if (!a.model.empty()) run["peak_rss_bytes"] = run["client_peak_rss_bytes"];  // in-process: the engine's process
    if (doc.contains("engine_capacity") && o.max_concurrency > 0) {
      const json& cap = doc["engine_capacity"]["by_concurrency"][std::to_string(o.max_concurrency)];
      run["engine_bound_output_tok_s"] = cap["output_tok_s"];
      run["fraction_of_engine_bound"] = run["output_throughput"].get<double>() / cap["output_tok_s"].get<double>();
    }
    if (!a.save_detailed) run.erase("detail");
    runs.push_back(run);
    if (!a.json) {
      auto f = [&](const char* k) { return run.contains(k) ? run[k].get<double>() : 0.0; };
      std::printf("%-18s %d/%d done  out %.1f tok/s  TTFT p50 %.1f p99 %.1f ms  TPOT p50 %.2f p99 %.2f ms  ITL p50 %.2f p99 %.2f ms  E2E p50 %.0f p99 %.0f ms",
                  label.c_str(), run["completed"].get<int>(), o.num_prompts, f("output_throughput"), f("p50_ttft_ms"), f("p99_ttft_ms"), f("p50_tpot_ms"),
                  f("p99_tpot_ms"), f("p50_itl_ms"), f("p99_itl_ms"), f("p50_e2el_ms"), f("p99_e2el_ms"));
      if (run.contains("fraction_of_bound")) std::printf("  (%.0f%% of the %s bound", 100 * f("fraction_of_bound"), run["bound"].get<std::string>().c_str());
      if (run.contains("fraction_of_engine_bound")) std::printf(", %.0f%% of the engine's", 100 * f("fraction_of_engine_bound"));
      if (run.contains("fraction_of_bound")) std::printf(")");
      if (!run["request_goodput"].is_null()) std::printf("  goodput %.2f req/s", f("request_goodput"));
      if (run.contains("dollars_per_million_output_tokens")) std::printf("  $%.3f/M out", f("dollars_per_million_output_tokens"));
      std::printf("\n");
      for (const auto& e : run["errors"]) std::printf("  %d failed: %s\n", e["count"].get<int>(), e["error"].get<std::string>().c_str());
      std::fflush(stdout);
    }
  }
  doc["runs"] = runs;
  if (!a.out.empty()) write_file_atomically(a.out, doc.dump(2) + "\n");
  if (a.json) std::cout << doc.dump() << "\n";
}

}  // namespace condense::cli
