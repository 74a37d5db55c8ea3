#include "serve/metrics.h"

#include <cstdio>

#include "core/process_stats.h"

namespace condense {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

namespace {
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
}  // namespace

void Histogram::write(std::string& out, const std::string& name) const {
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += name + "_bucket{le=\"" + num(bounds_[i]) + "\"} " + std::to_string(cum) + "\n";
  }
  cum += counts_.back();
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cum) + "\n";
  out += name + "_sum " + num(sum_) + "\n";
  out += name + "_count " + std::to_string(count_) + "\n";
}

ServerMetrics::ServerMetrics()
    // vLLM's bucket bounds (seconds; token counts for the lengths).
    : ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}),
      itl_({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}),
      tpot_({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}),
      e2e_({0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0}),
      prompt_len_({1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}),
      gen_len_({1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}) {}

void ServerMetrics::first_token(double s) {
  std::lock_guard<std::mutex> lk(mu_);
  ttft_.observe(s);
}

void ServerMetrics::inter_token(double s) {
  std::lock_guard<std::mutex> lk(mu_);
  itl_.observe(s);
}

void ServerMetrics::finished(const std::string& reason, double e2e_s, double ttft_s, int prompt_tokens, int completion_tokens) {
  std::lock_guard<std::mutex> lk(mu_);
  if (ttft_s >= 0 && completion_tokens > 1) tpot_.observe((e2e_s - ttft_s) / (completion_tokens - 1));
  ++finished_[reason];
  e2e_.observe(e2e_s);
  prompt_len_.observe(prompt_tokens);
  gen_len_.observe(completion_tokens);
}

void ServerMetrics::rejected(int status) {
  std::lock_guard<std::mutex> lk(mu_);
  ++rejected_[status];
}

std::string ServerMetrics::prometheus(const SchedulerStats& s) const {
  std::string o;
  auto gauge = [&](const char* name, const char* help, double v, const char* type = "gauge") {
    o += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + num(v) + "\n";
  };
  gauge("condense:num_requests_running", "Requests in the running batch.", s.running);
  gauge("condense:num_requests_waiting", "Requests queued to start (preempted ones included).", s.waiting);
  gauge("condense:kv_blocks_total", "KV cache blocks in the pool (16 positions each).", double(s.kv_blocks_total));
  gauge("condense:kv_blocks_free", "KV cache blocks free.", double(s.kv_blocks_free));
  gauge("condense:kv_blocks_used", "KV cache blocks held by sequences.", double(s.kv_blocks_total - s.kv_blocks_free));
  gauge("condense:kv_cache_usage_perc", "Fraction of KV cache blocks in use (0..1).",
        s.kv_blocks_total ? double(s.kv_blocks_total - s.kv_blocks_free) / double(s.kv_blocks_total) : 0.0);
  gauge("condense:num_preemptions_total", "Sequences preempted (KV blocks freed, recomputed later).", double(s.preemptions), "counter");
  gauge("condense:prompt_tokens_total", "Prompt tokens prefilled (recomputation after preemption not counted).", double(s.prompt_tokens), "counter");
  gauge("condense:generation_tokens_total", "Tokens generated.", double(s.generation_tokens), "counter");
  gauge("condense:engine_steps_total", "Engine steps run.", double(s.steps), "counter");
  if (!s.spec_accepted_per_pos.empty()) {  // served with a draft (vLLM's spec_decode counters)
    gauge("condense:spec_decode_num_drafts_total", "Speculative rounds (a draft proposed tokens a target step verified).",
          double(s.spec_drafts), "counter");
    gauge("condense:spec_decode_num_draft_tokens_total", "Draft tokens proposed.", double(s.spec_draft_tokens), "counter");
    gauge("condense:spec_decode_num_accepted_tokens_total", "Draft tokens accepted.", double(s.spec_accepted_tokens), "counter");
    o += "# HELP condense:spec_decode_num_accepted_tokens_per_pos_total Draft tokens accepted at each draft position.\n"
         "# TYPE condense:spec_decode_num_accepted_tokens_per_pos_total counter\n";
    for (size_t i = 0; i < s.spec_accepted_per_pos.size(); ++i) {
      o += "condense:spec_decode_num_accepted_tokens_per_pos_total{position=\"" + std::to_string(i) + "\"} " +
           std::to_string(s.spec_accepted_per_pos[i]) + "\n";
    }
    gauge("condense:draft_kv_blocks_free", "The draft model's KV cache blocks free.", double(s.draft_kv_blocks_free));
  }
  gauge("process_resident_memory_bytes", "Resident memory of the server process.", double(current_rss_bytes()));
  gauge("condense:process_peak_rss_bytes", "The most resident memory the server process has held.", double(peak_rss_bytes()));
  std::lock_guard<std::mutex> lk(mu_);
  o += "# HELP condense:request_success_total Requests finished, by finish reason.\n# TYPE condense:request_success_total counter\n";
  for (const char* r : {"stop", "length", "cancelled", "error"}) {
    auto it = finished_.find(r);
    o += std::string("condense:request_success_total{finished_reason=\"") + r + "\"} " + std::to_string(it == finished_.end() ? 0 : it->second) + "\n";
  }
  o += "# HELP condense:request_rejected_total Requests answered with an error status before running.\n# TYPE condense:request_rejected_total counter\n";
  for (const auto& [status, n] : rejected_) o += "condense:request_rejected_total{status=\"" + std::to_string(status) + "\"} " + std::to_string(n) + "\n";
  auto hist = [&](const char* name, const char* help, const Histogram& h) {
    o += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " histogram\n";
    h.write(o, name);
  };
  hist("condense:time_to_first_token_seconds", "Time from the request's arrival to its first token.", ttft_);
  hist("condense:inter_token_latency_seconds", "Time between consecutive tokens of a request.", itl_);
  hist("condense:time_per_output_token_seconds", "Per request: (last token - first token) / (tokens - 1).", tpot_);
  hist("condense:e2e_request_latency_seconds", "Time from arrival to the last token.", e2e_);
  hist("condense:request_prompt_tokens", "Prompt tokens per finished request.", prompt_len_);
  hist("condense:request_generation_tokens", "Generated tokens per finished request.", gen_len_);
  return o;
}

}  // namespace condense
