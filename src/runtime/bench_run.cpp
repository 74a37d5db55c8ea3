#include "runtime/bench_run.h"

#include <malloc.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <ctime>

#include "core/error.h"
#include "core/version.h"
#include "core/process_stats.h"
#include "io/model_loader.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/machine_probe.h"
#include "runtime/engine.h"
#include "runtime/spec_bench.h"

namespace condense {
namespace {

using json = nlohmann::json;
using clk = std::chrono::steady_clock;

double since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

std::vector<int> synthetic_tokens(int n, int vocab) {
  std::vector<int> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[size_t(i)] = int((uint64_t(i) * 2654435761u + 12345) % uint64_t(vocab));
  return t;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Nearest-rank percentile q in (0, 1].
double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  const size_t r = size_t(std::ceil(q * double(v.size())));
  return v[std::min(v.size(), std::max<size_t>(r, 1)) - 1];
}

// Seconds of compute at the measured peaks for the given multiply-adds.
double compute_seconds(const kernels::probe::Limits& lim, double f32, double int8, double int16) {
  return 2.0 * f32 / (lim.fma_gflops * 1e9) + (int8 > 0 ? 2.0 * int8 / (std::max(lim.int8_gops, 1e-9) * 1e9) : 0.0) +
         (int16 > 0 ? 2.0 * int16 / (std::max(lim.int16_gops, 1e-9) * 1e9) : 0.0);
}

// Times of `steps` decode steps (after one warm-up) of `batch` sequences:
// `base`, holding `ctx` positions, and copies of it; each step feeds every
// sequence one token (a fixed hash of position and sequence) and computes its
// logits. The copies are dropped and `base` is cut back to `ctx` after.
std::vector<double> decode_step_times(Engine& e, int base, int ctx, int batch, int steps, const std::vector<int>& toks) {
  const int vocab = e.config().vocab;
  std::vector<float> logits(size_t(batch) * size_t(vocab));
  std::vector<int> seqs = {base};
  for (int i = 1; i < batch; ++i) seqs.push_back(e.fork_sequence(base));
  std::vector<int> next(static_cast<size_t>(batch));
  std::vector<double> times;
  for (int t = 0; t <= steps; ++t) {
    std::vector<Engine::SeqStep> b;
    for (int i = 0; i < batch; ++i) {
      next[size_t(i)] = toks[size_t(ctx + t + i) % toks.size()];
      b.push_back({seqs[size_t(i)], &next[size_t(i)], 1, logits.data() + size_t(i) * size_t(vocab), 1});
    }
    const auto t0 = clk::now();
    e.step(b);
    if (t > 0) times.push_back(since(t0));
  }
  for (int i = 1; i < batch; ++i) e.drop_sequence(seqs[size_t(i)]);
  e.truncate(base, ctx);
  return times;
}

// A new sequence holding the first `ctx` synthetic tokens (prefilled in 512-token chunks).
int prefilled_sequence(Engine& e, int ctx, const std::vector<int>& toks) {
  const int s = e.add_sequence();
  for (int p0 = 0; p0 < ctx; p0 += 512) e.step({{s, toks.data() + p0, std::min(512, ctx - p0), nullptr, 0}});
  return s;
}

}  // namespace

json bench_header(const char* kind) {
  const std::time_t t = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return {{"schema", "condense-bench/1"}, {"kind", kind}, {"date", date}, {"condense", {{"version", version()}, {"revision", git_revision()}}}};
}

DecodeBounds measure_decode_bounds(const Engine& e, int threads, size_t probe_bytes) {
  DecodeBounds b;
  b.limits = kernels::probe::measure(threads, probe_bytes, 2);
  const kernels::probe::Limits& lim = b.limits;
  b.machine = {{"cpu", kernels::cpu_name()}, {"isa", kernels::isa_name(kernels::active_isa())}, {"threads", threads},
               {"read_gbs", lim.read_gbs}, {"fma_gflops", lim.fma_gflops}, {"int8_gops", lim.int8_gops}, {"int8_kind", lim.int8_kind},
               {"int16_gops", lim.int16_gops}, {"int16_kind", lim.int16_kind}};
  int64_t f32 = 0, i8 = 0, i16 = 0;
  e.macs_per_token(&f32, &i8, &i16);
  b.compute_s_per_token = compute_seconds(lim, double(f32), double(i8), double(i16));
  b.decode_weight_bytes = double(e.decode_weight_bytes());
  b.kv_bytes_per_token = double(e.kv().bytes_per_token());
  return b;
}

double time_prefill(Engine& e, int tokens, int reps) {
  const auto toks = synthetic_tokens(tokens, e.config().vocab);
  std::vector<float> logits(size_t(e.config().vocab));
  double best = 1e30;
  for (int r = 0; r < std::max(1, reps); ++r) {
    const int s = e.add_sequence();
    const auto t0 = clk::now();
    e.step({{s, toks.data(), tokens, logits.data(), 1}});
    best = std::min(best, since(t0));
    e.drop_sequence(s);
  }
  return best;
}

double time_decode_step(Engine& e, int batch, int context, int steps) {
  const auto toks = synthetic_tokens(context + steps + batch + 1, e.config().vocab);
  const int base = prefilled_sequence(e, context, toks);
  const double t = median(decode_step_times(e, base, context, batch, steps, toks));
  e.drop_sequence(base);
  return t;
}

json run_bench(const std::string& path, const BenchOptions& opt, const std::function<void(int, int, const std::string&)>& progress) {
  const int total = 2 + int(opt.prefill.size()) + int(opt.contexts.size() * opt.batches.size()) + (opt.draft.empty() ? 0 : 1);
  int done = 0;
  auto tick = [&](const std::string& what) {
    if (progress) progress(++done, total, what);
  };
  const auto t_load = clk::now();
  LoadedModel lm = load_model(path, opt.tokenizer, {.effective_f32 = false});
  const ModelConfig cfg = lm.model.config;
  const int max_prefill = opt.prefill.empty() ? 0 : *std::max_element(opt.prefill.begin(), opt.prefill.end());
  const int max_ctx = opt.contexts.empty() ? 0 : *std::max_element(opt.contexts.begin(), opt.contexts.end());
  const int max_batch = opt.batches.empty() ? 1 : *std::max_element(opt.batches.begin(), opt.batches.end());
  constexpr int kSpecPrompt = 8;  // synthetic prompt tokens of the speculative runs
  const int need = std::max({max_prefill, max_ctx + opt.decode_tokens + 1, opt.draft.empty() ? 0 : kSpecPrompt + opt.draft_steps});
  const int max_seq = std::min(cfg.max_seq, need);
  const int64_t blocks_per_seq = (max_seq + kKvBlockTokens - 1) / kKvBlockTokens;
  Engine e(lm.model, EngineOptions{max_seq, std::max<int64_t>(blocks_per_seq * max_batch, blocks_per_seq + 1), opt.kv_dtype, 0, opt.device});
  const std::string format = lm.model.format;
  const std::string activations = lm.model.activations.type == DType::I8 ? (lm.model.activations.head ? "int8 (head too)" : "int8")
                                  : lm.model.activations.type == DType::F8E4M3 ? "fp8-e4m3 (simulated)"
                                                                                : "f32";
  release_weights(lm.model);
  malloc_trim(0);  // the packed forms read from the file are gone: give their pages back
  const double load_s = since(t_load);
  const size_t rss_loaded = current_rss_bytes();
  tick("load");

  const int threads = omp_get_max_threads();
  const DecodeBounds db = measure_decode_bounds(e, threads, opt.probe_bytes);
  const kernels::probe::Limits& lim = db.limits;
  reset_peak_rss();  // the probe's buffer is not the model's
  tick("machine limits");
  int64_t f32_macs = 0, int8_macs = 0, int16_macs = 0;
  e.macs_per_token(&f32_macs, &int8_macs, &int16_macs);
  auto compute_s = [&](double f32, double int8, double int16) { return compute_seconds(lim, f32, int8, int16); };
  const double compute_s_per_token = db.compute_s_per_token;
  // The head runs once per prompt: its macs (f32, int8 or int16) are not multiplied by the prompt length.
  const double head_macs = double(int64_t(cfg.vocab) * cfg.dim);
  const int head_kind = e.head_integer() ? 1 : e.head_int16() ? 2 : 0;
  const double head_f32 = head_kind == 0 ? head_macs : 0.0, head_int8 = head_kind == 1 ? head_macs : 0.0,
               head_int16 = head_kind == 2 ? head_macs : 0.0;
  const double wbytes = double(e.decode_weight_bytes()), kv_tok = double(e.kv().bytes_per_token());

  json out = bench_header("offline");
  out["model"] = {{"path", path}, {"format", format}, {"dim", cfg.dim}, {"n_layers", cfg.n_layers}, {"vocab", cfg.vocab},
                  {"weight_bytes", e.weight_bytes()}, {"decode_weight_bytes", e.decode_weight_bytes()}, {"params", cfg.n_params()},
                  {"f32_macs_per_token", f32_macs}, {"int8_macs_per_token", int8_macs}, {"int16_macs_per_token", int16_macs}, {"activations", activations}, {"load_s", load_s},
                  {"linears", e.describe_linears()}};
  out["machine"] = db.machine;
  out["device"] = device_name(opt.device);
  if (opt.device != Device::CPU) {
    out["bounds_note"] = "the compute and bandwidth bounds (and fraction_of_bound) here are the host CPU's, not the GPU's; "
                         "the GPU's HBM bandwidth and kernel fractions are bench/gpu_kernels'";
  }
  out["kv"] = {{"dtype", kv_code_name(e.kv().code())}, {"bytes_per_token", e.kv().bytes_per_token()}, {"pool_bytes", e.kv().bytes()},
               {"block_tokens", kKvBlockTokens}};

  const auto toks = synthetic_tokens(std::max(max_seq, 1), cfg.vocab);
  json prefill = json::array();
  double ttft = 0;
  for (int p : opt.prefill) {
    json row = {{"tokens", p}};
    if (p > max_seq) {
      row["skipped"] = "longer than the model's max_seq (" + std::to_string(cfg.max_seq) + ")";
    } else {
      const double best = time_prefill(e, p, opt.reps);
      const double bound = p / compute_s(p * (double(f32_macs) - head_f32) + head_f32, p * (double(int8_macs) - head_int8) + head_int8,
                                         p * (double(int16_macs) - head_int16) + head_int16);
      row.update({{"seconds", best}, {"tok_s", p / best}, {"compute_bound_tok_s", bound}, {"fraction_of_bound", p / best / bound}});
      if (ttft == 0) ttft = best;
    }
    prefill.push_back(row);
    tick("prefill " + std::to_string(p));
  }
  out["prefill"] = prefill;
  out["ttft_s"] = ttft;  // the first prompt length's prefill, through its first logits

  json decode = json::array();
  for (int asked : opt.contexts) {
    // A context the model can hold but not with the decode steps after it is
    // moved back so the last step ends at max_seq (1024 on a 1024 model: 1007).
    const int ctx = asked <= max_seq && asked + opt.decode_tokens + 1 > max_seq ? std::max(0, max_seq - opt.decode_tokens - 1) : asked;
    const int base = ctx + opt.decode_tokens + 1 <= max_seq ? prefilled_sequence(e, ctx, toks) : -1;
    for (int b : opt.batches) {
      json row = {{"batch", b}, {"context", ctx}};
      if (ctx != asked) row["requested_context"] = asked;
      if (base < 0) {
        row["skipped"] = "context + decode tokens exceed the model's max_seq (" + std::to_string(cfg.max_seq) + ")";
      } else {
        const std::vector<double> steps = decode_step_times(e, base, ctx, b, opt.decode_tokens, toks);
        double sum = 0;
        for (double s : steps) sum += s;
        const double tok_s = double(b) * double(steps.size()) / sum;
        const double bytes = wbytes + double(b) * (ctx + opt.decode_tokens / 2.0) * kv_tok;  // mid-run KV read per step
        const double bw_bound = double(b) / (bytes / (lim.read_gbs * 1e9));
        const double cp_bound = 1.0 / compute_s_per_token;
        const double bound = std::min(bw_bound, cp_bound);
        row.update({{"tokens", b * int(steps.size())}, {"tok_s", tok_s}, {"step_ms_p50", 1e3 * median(steps)},
                    {"step_ms_p99", 1e3 * percentile(steps, 0.99)},
                    {"bytes_per_step", bytes}, {"bandwidth_bound_tok_s", bw_bound}, {"compute_bound_tok_s", cp_bound},
                    {"bound", bw_bound <= cp_bound ? "bandwidth" : "compute"}, {"fraction_of_bound", tok_s / bound}});
      }
      decode.push_back(row);
      tick("decode batch " + std::to_string(b) + " context " + std::to_string(ctx));
    }
    if (base >= 0) e.drop_sequence(base);
  }
  out["decode"] = decode;
  if (!opt.draft.empty()) {
    // batch 1, plain against speculative, greedy and T = 1, on four synthetic prompts
    LoadedModel dm = load_model(opt.draft, opt.tokenizer, {.effective_f32 = false});
    check_draft_fits(opt.draft, dm.model.config, cfg);
    Engine de(dm.model, EngineOptions{std::min(dm.model.config.max_seq, max_seq), 0, "", 0, opt.device});
    const int steps = std::min(opt.draft_steps, std::min(max_seq, de.max_seq()) - kSpecPrompt);
    if (steps < 1) fail("--draft", "the model's (or the draft's) context has no room for a prompt and generated tokens");
    std::vector<std::vector<int>> prompts;
    for (int i = 0; i < 4; ++i) {
      std::vector<int> p{cfg.bos_id};
      for (int j = 1; j < kSpecPrompt; ++j) p.push_back(toks[size_t(i * kSpecPrompt + j) % toks.size()]);
      prompts.push_back(p);
    }
    json sp = {{"draft", opt.draft}, {"draft_layers", dm.model.config.n_layers}, {"draft_params", dm.model.config.n_params()},
               {"batch", 1}, {"prompts", prompts.size()}, {"prompt_tokens", kSpecPrompt}, {"generated_per_prompt", steps}};
    const SpecConfig sc;
    for (const float t : {0.f, 1.f}) {
      const SpecPoint plain = time_generation(e, nullptr, prompts, steps, opt.reps, t, sc);
      const SpecPoint spec = time_generation(e, &de, prompts, steps, opt.reps, t, sc);
      sp[t == 0.f ? "greedy" : "sampled_t1"] = spec_point_json(spec, plain);
    }
    out["speculative"] = sp;
    tick("speculative decoding");
  }
  out["memory"] = {{"rss_after_load_bytes", rss_loaded}, {"peak_rss_bytes", peak_rss_bytes()},
                   {"weight_bytes", e.weight_bytes()}, {"kv_pool_bytes", e.kv().bytes()}};
  return out;
}

}  // namespace condense
