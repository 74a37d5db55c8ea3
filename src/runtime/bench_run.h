// `condense bench`: offline speed of one model on this machine, with the
// machine's limits measured in the same run so every figure has its bound
// beside it. The JSON it returns follows docs/BENCH.md (schema
// "condense-bench/1"), which the report and the server's load test share.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/device.h"
#include "kernels/cpu/machine_probe.h"

namespace condense {

struct BenchOptions {
  std::vector<int> prefill = {128, 512};   // prompt lengths
  std::vector<int> batches = {1, 4, 16};   // sequences decoding together
  std::vector<int> contexts = {128, 1024}; // positions already cached when decoding starts
  int decode_tokens = 16;                  // decode steps timed per (batch, context)
  int reps = 3;                            // best of
  std::string kv_dtype;                    // "" : the checkpoint's choice
  Device device = Device::CPU;             // where the engine runs
  std::string tokenizer;                   // for models that carry none (not needed: token ids are synthetic)
  size_t probe_bytes = size_t(1) << 30;    // read-bandwidth probe size
  std::string draft;                       // also: speculative decoding at batch 1 with this draft against plain
  int draft_steps = 128;                   // tokens generated per prompt there
};

class Engine;

// The fields every condense-bench/1 object starts with: schema, `kind`
// ("offline" | "load"), the UTC date, and the condense build.
nlohmann::json bench_header(const char* kind);

// The machine's limits, measured now, and what they bound for an engine's
// decode: seconds of compute per token at the measured peaks (linears and
// head; attention not counted) and the bytes one decode step reads.
struct DecodeBounds {
  nlohmann::json machine;         // the "machine" object of docs/BENCH.md
  kernels::probe::Limits limits;  // as measured
  double compute_s_per_token = 0;
  double decode_weight_bytes = 0, kv_bytes_per_token = 0;
};
DecodeBounds measure_decode_bounds(const Engine& e, int threads, size_t probe_bytes);

// The engine's own speed, timed on synthetic tokens (needs a free KV pool):
// seconds to prefill `tokens` into a new sequence (best of `reps`), and the
// median seconds of one decode step of `batch` sequences that hold `context`
// positions (`steps` steps after a warm-up one).
double time_prefill(Engine& e, int tokens, int reps);
double time_decode_step(Engine& e, int batch, int context, int steps);

// Runs everything on the model at `path`; `progress(done, total, what)` after each measurement.
nlohmann::json run_bench(const std::string& path, const BenchOptions& opt,
                         const std::function<void(int, int, const std::string&)>& progress = {});

}  // namespace condense
