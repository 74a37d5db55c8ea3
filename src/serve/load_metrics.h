// Load-test metrics as vLLM's `bench serve` defines them (../shared/INTEROP.md
// A.6), so condense's numbers and vLLM's compare key for key: per request TTFT,
// inter-token latencies per chunk, E2E latency; TPOT = (E2E - TTFT) /
// (output tokens - 1) for requests with more than one token; mean, median,
// std (population) and percentiles by linear interpolation (numpy's default)
// in milliseconds; goodput against SLOs; throughputs over the run's duration.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace condense {

struct RequestRecord {
  bool success = false;
  std::string error;
  int input_len = 0, output_len = 0;
  double start = 0;               // seconds from the run's start, when sent
  double ttft = 0, latency = 0;   // seconds
  std::vector<double> itls;       // seconds between consecutive chunks
};

struct Slo {
  double ttft_ms = 0, tpot_ms = 0, e2el_ms = 0;  // 0: not part of the goodput
  bool any() const { return ttft_ms > 0 || tpot_ms > 0 || e2el_ms > 0; }
};
// "ttft:500,tpot:50" (milliseconds); throws Error naming the bad part.
Slo parse_slo(const std::string& spec);

// numpy.percentile(v, q) with linear interpolation; 0 for an empty v.
double percentile_linear(std::vector<double> v, double q);

// The vLLM keys for the run: completed, failed, duration, total_input_tokens,
// total_output_tokens, request_throughput, request_goodput (with SLOs),
// output_throughput, total_token_throughput, max_output_tokens_per_s,
// max_concurrent_requests, and for m in ttft, tpot, itl, e2el:
// mean_m_ms, median_m_ms, std_m_ms, p<q>_m_ms for each q in `percentiles`.
nlohmann::json summarize_load(const std::vector<RequestRecord>& records, double duration_s, const std::vector<double>& percentiles,
                              const Slo& slo);

}  // namespace condense
