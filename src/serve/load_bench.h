// `condense bench` under load: requests sent to an OpenAI-compatible server
// (--server URL: condense's, llama.cpp's, vLLM's) or to an in-process
// scheduler (--model, no HTTP), arriving all at once, at a Poisson (gamma)
// rate or under a concurrency limit, timed as vLLM's `bench serve` times them
// (load_metrics.h). The JSON is condense-bench/1 with "kind": "load"
// (docs/BENCH.md).
#pragma once
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "serve/load_metrics.h"
#include "serve/scheduler.h"

namespace condense {

struct LoadPrompt {
  std::vector<int> tokens;  // synthetic prompts and tokenized text (in-process)
  std::string text;         // a text window (sent as text to a server)
  int input_len = 0;        // tokens, where known before sending
};

// Where requests go. run() blocks until the request ends; times are seconds
// from `t0`'s clock (steady).
class LoadTarget {
 public:
  virtual ~LoadTarget() = default;
  virtual RequestRecord run(const LoadPrompt& p, int max_tokens, double temperature, uint64_t seed, bool ignore_eos, double t0) = 0;
  virtual nlohmann::json describe() const = 0;
  // Metrics the target reports after a run (the server's peak RSS); null when none.
  virtual nlohmann::json after_run() { return nullptr; }
  // Cumulative speculative decoding counters {drafts, draft_tokens,
  // accepted_tokens, accepted_per_pos[]}; null when the target does not
  // speculate (or does not say). Read before and after a run.
  virtual nlohmann::json spec_counters() { return nullptr; }
};

// POST {base}/completions with stream + include_usage, the prompt as text or token ids.
std::unique_ptr<LoadTarget> http_target(const std::string& url, const std::string& model, const std::string& api_key);
// Requests submitted straight to `sched` (which must outlive the target).
std::unique_ptr<LoadTarget> engine_target(Scheduler& sched);

struct LoadTestOptions {
  int num_prompts = 100;
  double request_rate = std::numeric_limits<double>::infinity();  // requests/s; inf: all at t = 0
  double burstiness = 1.0;    // gamma shape of the gaps (1: Poisson)
  int max_concurrency = 0;    // requests in flight at most; 0: no limit
  int output_len = 128;       // max_tokens of every request
  double temperature = 0;
  bool ignore_eos = false;
  int warmups = 0;            // requests run (one at a time) before timing starts
  uint64_t seed = 0;
  std::vector<double> percentiles = {50, 90, 95, 99};
  Slo slo;
  double price_per_hour = 0;  // dollars per hour of the machine; 0: no cost figure
};

// Synthetic prompts: n prompts of `input_len` tokens, BOS first, the rest
// drawn (seeded) from ids [lo, hi).
std::vector<LoadPrompt> synthetic_prompts(int n, int input_len, int bos, int lo, int hi, uint64_t seed);

// Arrival times (seconds from the start) as vLLM draws them: gamma gaps of
// shape `burstiness` and mean 1/rate, rescaled so the last lands at n/rate.
std::vector<double> arrival_times(int n, double rate, double burstiness, uint64_t seed);

// One run: warm-ups, then every prompt (cycled to num_prompts) at its arrival
// time; progress(done, total) from the calling thread.
nlohmann::json run_load(LoadTarget& target, const std::vector<LoadPrompt>& prompts, const LoadTestOptions& opt,
                        const std::function<void(int, int)>& progress = {});

}  // namespace condense
