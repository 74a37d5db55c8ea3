// The server's Prometheus metrics (GET /metrics, text format 0.0.4). Names
// follow vLLM's (vllm:num_requests_running -> condense:num_requests_running,
// time_to_first_token_seconds, ...) so dashboards built for it need only the
// prefix changed; docs/SERVE.md lists them.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "serve/scheduler.h"

namespace condense {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the _bucket/_sum/_count lines of `name`.
  void write(std::string& out, const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bound, plus +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  void first_token(double ttft_s);
  void inter_token(double seconds);
  // ttft_s < 0: no token came. TPOT = (e2e - ttft) / (completion - 1), as vLLM's bench.
  void finished(const std::string& reason, double e2e_s, double ttft_s, int prompt_tokens, int completion_tokens);
  void rejected(int status);  // answered with an error before running
  std::string prometheus(const SchedulerStats& s) const;

 private:
  mutable std::mutex mu_;
  Histogram ttft_, itl_, tpot_, e2e_, prompt_len_, gen_len_;
  std::map<std::string, uint64_t> finished_;  // by finish reason
  std::map<int, uint64_t> rejected_;          // by HTTP status
};

}  // namespace condense
