// Mixed-precision variants for `condense sweep`: the spec's "mixed" block
// (storage options, method, budgets), and for each budget the recipe whose
// per-tensor formats the allocation (compress/bit_allocation.h) chose from the
// sensitivity table (pipeline/sensitivity.h). docs/SWEEP.md.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pipeline/recipe.h"
#include "pipeline/sensitivity.h"
#include "pipeline/sweep.h"

namespace condense::pipeline {

// The option an entry of a sweep's "mixed.options" describes: a quantize
// stage's "weights" object, optionally with "sparsity": FRACTION beside it, or
// {"sparsity": FRACTION} alone.
StorageOption storage_option(const nlohmann::json& j, const std::string& where);

struct MixedSpec {
  std::vector<StorageOption> options;
  std::string objective = "kl";        // kl: the sum of the tensors' KL; nll: the sum of their changes of the text's NLL
  std::string method = "rtn";          // rtn | gptq (AWQ rescales shared inputs, so it cannot run per tensor group)
  nlohmann::json gptq;                 // the quantize stages' "gptq" object, when given
  std::vector<nlohmann::json> budgets; // bits per target weight (numbers) or an option's name (its uniform size)
  std::vector<double> tpot_ms;         // decode time per token targets (batch 1)
  std::vector<std::string> targets;    // weight-name globs (empty: the blocks' linear weights)
  CalibrationSpec windows;             // the sensitivity pass's windows (default 8 x the calibration length)
};

// spec["mixed"], validated (fails naming the key); nullopt-like empty options when absent.
MixedSpec parse_mixed(const nlohmann::json& spec);

// The quantize stage the variants run, as parse_recipe reads it (GPTQ settings,
// calibration windows): the sensitivity pass compresses each weight the same way.
StageSpec mixed_quantize_stage(const nlohmann::json& spec, const MixedSpec& ms);

struct MixedPoint {
  SweepPoint point;
  double bits = 0;           // bytes * 8 / target weights, as allocated
  double tpot_ms = 0;        // the predicted decode time per token (see mixed_points)
  double predicted = 0;      // the objective's sum over the chosen options
  std::vector<int> choice;   // an option index per sensitivity row
};

// One variant per budget (duplicates, i.e. budgets that allocate the same way,
// once); budgets no allocation fits are listed in `notes`. A latency budget
// spends the target TPOT minus what the reference's step takes outside the
// targets (reference_tpot_ms minus the targets' measured kernel times) on the
// chosen options' kernel times; the variant's real TPOT is then measured.
// reference_tpot_ms is NaN when unknown (then tpot_ms budgets are refused).
std::vector<MixedPoint> mixed_points(const nlohmann::json& spec, const MixedSpec& ms, const Sensitivity& s, double reference_tpot_ms,
                                     std::vector<std::string>* notes);

}  // namespace condense::pipeline
