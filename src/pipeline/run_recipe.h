// Runs a parsed recipe: loads the teacher, builds the student, prepares the
// data (with teacher-generated samples when asked), runs each stage with
// progress and validation, writes the student, evaluates it (and the teacher)
// by the perplexity protocol, and writes results.json next to the model.
#pragma once
#include <nlohmann/json.hpp>

#include "core/device.h"
#include "dist/comm.h"

#include "pipeline/recipe.h"

namespace condense::pipeline {

struct RunOptions {
  bool resume = false;    // continue each stage from its state file when present
  bool log_json = false;  // JSON lines on stderr instead of a progress bar
  Device device = Device::CPU;  // where training stages run (--device); other stages run on the CPU
  // Data parallel (null: alone): training stages split each step's batch over
  // the ranks, calibration its sequences; rank 0 writes states, outputs and
  // results, evaluates, and logs.
  dist::Communicator* comm = nullptr;
  size_t bucket_bytes = size_t(25) << 20;  // gradients per all-reduce
  int64_t check_every = 50;                // steps between cross-rank state checks
};

// `cs.samples` windows of the recipe's training data (its text or token
// folder, without teacher samples) as its calibrated stages draw them, for a
// model with `tok`'s vocabulary; each window starts with `m`'s BOS.
compress::CalibrationSet recipe_calibration_windows(const Recipe& r, const Model& m, const Tokenizer& tok, const CalibrationSpec& cs);

// Returns the results object it also writes to <output.dir>/results.json.
nlohmann::json run_recipe(const Recipe& recipe, const RunOptions& opt);

}  // namespace condense::pipeline
