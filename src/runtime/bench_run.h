// `condense bench`: offline speed of one model on this machine, with the
// machine's limits measured in the same run so every figure has its bound
// beside it. The JSON it returns follows docs/BENCH.md (schema
// "condense-bench/1"), which the report and the server's load test share.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace condense {

struct BenchOptions {
  std::vector<int> prefill = {128, 512};   // prompt lengths
  std::vector<int> batches = {1, 4, 16};   // sequences decoding together
  std::vector<int> contexts = {128, 1024}; // positions already cached when decoding starts
  int decode_tokens = 16;                  // decode steps timed per (batch, context)
  int reps = 3;                            // best of
  std::string kv_dtype;                    // "" : the checkpoint's choice
  std::string tokenizer;                   // for models that carry none (not needed: token ids are synthetic)
  size_t probe_bytes = size_t(1) << 30;    // read-bandwidth probe size
};

// Runs everything on the model at `path`; `progress(done, total, what)` after each measurement.
nlohmann::json run_bench(const std::string& path, const BenchOptions& opt,
                         const std::function<void(int, int, const std::string&)>& progress = {});

}  // namespace condense
