// `condense bench --server URL | --model MODEL`: the load mode (serve/load_bench.h).
#pragma once
#include <string>
#include <vector>

#include "serve/load_bench.h"
#include "serve/scheduler.h"

namespace condense::cli {

struct BenchLoadArgs {
  std::string server, model, tokenizer, served_name, api_key;
  std::string bound_model;  // --server: the served model, loaded here only to compute the kernels' bound
  LoadTestOptions load;
  std::string request_rate = "inf";
  std::string sweep;  // "concurrency=1,4,16" | "rate=1,2,4"
  int input_len = 128;
  std::string dataset;
  std::string percentiles = "50,90,95,99";
  std::string slo;
  // in-process engine
  SchedulerOptions sched{.max_queue = 1 << 20};
  std::string kv_memory = "1G", kv_dtype, device = "cpu";
  std::string draft;  // --model: speculative decoding with this draft (the scheduler's, docs/SPECULATIVE.md)
  int64_t kv_blocks = 0;
  size_t probe_bytes = size_t(256) << 20;
  std::string out;
  bool json = false, log_json = false, save_detailed = false;
};

void run_bench_load(BenchLoadArgs& a);

}  // namespace condense::cli
