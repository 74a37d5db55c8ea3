// The report's results model: one Variant per model, joined from the JSON
// condense writes (a recipe's results.json, `condense bench --json`), read
// from files only (DESIGN.md: report/ reads results JSON).
#pragma once
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace condense::report {

inline constexpr double kNone = std::numeric_limits<double>::quiet_NaN();

// One run of `condense bench` under load (kind "load"): a concurrency or a rate.
struct LoadPoint {
  std::string label;                 // "concurrency 16", "rate 4/s", "all at once"
  double concurrency = kNone, rate = kNone;
  double output_tok_s = kNone, request_goodput = kNone;
  double ttft_p50_ms = kNone, ttft_p99_ms = kNone, tpot_p50_ms = kNone, tpot_p99_ms = kNone, itl_p99_ms = kNone, e2el_p99_ms = kNone;
  int completed = 0, failed = 0;
};

// `condense bench MODEL --draft DRAFT`: batch-1 speculative decoding against
// plain decoding of the same model (docs/SPECULATIVE.md).
struct SpecPoint {
  std::string mode;    // "greedy" | "T = 1"
  std::string draft;   // the draft's path
  int draft_layers = 0;
  double tok_s = kNone, plain_tok_s = kNone, speedup = kNone;
  double acceptance_rate = kNone, acceptance_length = kNone, draft_time_share = kNone;  // rate in percent (vLLM's)
};

struct Variant {
  std::string name;    // the recipe's name, else the model's file name
  std::string model;   // the model's path as the JSON names it (the join key, made absolute)
  bool reference = false;  // the recipes' teacher: quality 0 by definition
  bool mixed = false;      // per-tensor schemes (a mixed-precision allocation)
  // Quality against the reference (results.json eval.vs_teacher).
  double ppl = kNone, delta_ppl_pct = kNone, kl_mean = kNone, kl_p99 = kNone, top1 = kNone;
  // Size (bench model.weight_bytes: what the engine holds) and per parameter.
  double weight_bytes = kNone, params = kNone, bits_per_weight = kNone;
  // Decode at batch 1, the first context measured (bench decode[]).
  double tpot_p50_ms = kNone, tpot_p99_ms = kNone, decode_tok_s = kNone;
  int context = 0;
  std::string linears, machine, date;
  std::vector<LoadPoint> load;  // runs under load, in the order read
  std::string load_target;      // what served them (a server URL, or in-process)
  std::vector<SpecPoint> speculative;  // bench --draft points
  std::string revision;    // the condense build that measured it (bench, else results: condense.revision)
  nlohmann::json recipe;   // results.json recipe_source (null when unknown)
  nlohmann::json stages;   // results.json stages[].summary, in order
  std::vector<std::string> sources;  // the files read for it
};

// Reads every path: a recipe output folder (its results.json, and bench*.json
// beside it), a results.json, or a condense-bench/1 JSON file. Variants are
// joined by model path; a bench of a recipe's teacher becomes the reference.
// Fails naming the file on unreadable or foreign JSON.
std::vector<Variant> load_variants(const std::vector<std::string>& paths);

}  // namespace condense::report
