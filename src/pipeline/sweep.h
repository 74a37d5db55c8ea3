// `condense sweep SPEC.json`: a grid of compressed variants of one teacher
// (weights x method x sparsity x KV dtype x int8 activations) and mixed-
// precision variants (pipeline/mixed_precision.h), each run as a recipe, evaluated against the teacher and benchmarked, cached by a hash of
// its recipe and the teacher's bytes (a rerun runs only what changed), then
// the Pareto report (docs/SWEEP.md).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "report/variants.h"

namespace condense::pipeline {

struct SweepPoint {
  std::string name;      // e.g. "int4g32-gptq-s50-kvfp8"
  nlohmann::json recipe; // the recipe that makes it (output.dir set)
};

// The valid grid points of a spec, in grid order (invalid combinations, e.g.
// GPTQ on fp8 weights, are left out and listed in `skipped`). Fails naming the
// key on a malformed spec.
std::vector<SweepPoint> expand_sweep(const nlohmann::json& spec, std::vector<std::string>* skipped = nullptr);

// The calibration object every calibrated stage of a sweep gets: the spec's
// "calibration", else 32 windows of 128 tokens.
nlohmann::json sweep_calibration(const nlohmann::json& spec);
// "-s50" for a 50% sparsity: how variant names spell a pruning fraction.
std::string sparsity_tag(double sparsity);

// A variant's recipe: cut from the spec's teacher, calibrated on its data,
// evaluated on its eval text, written to output.dir/name.
nlohmann::json sweep_recipe(const nlohmann::json& spec, const std::string& name, nlohmann::json stages);

struct SweepResult {
  std::vector<std::string> ran, cached;  // variant names
  std::string report;                    // report.html's path
  std::vector<report::Variant> variants; // the report's rows (the teacher first)
};

struct SweepOptions {
  bool log_json = false;
};

SweepResult run_sweep(const nlohmann::json& spec, const SweepOptions& opt = {});

// "size<=BYTES" (weight bytes; K/M/G suffixes) or "tpot_p99<=MS": the variant
// with the lowest ΔPPL within it (the reference excluded), if any.
std::optional<report::Variant> best_within(const std::vector<report::Variant>& v, const std::string& budget);

}  // namespace condense::pipeline
