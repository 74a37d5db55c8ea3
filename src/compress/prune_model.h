// The prune stage on a whole model. One-shot: magnitude (each tensor's own
// threshold, or one global threshold), Wanda or SparseGPT, optionally N:M;
// Wanda and SparseGPT calibrate layer by layer like GPTQ, each site's
// statistics taken after the block's earlier sites were pruned. Gradual:
// magnitude_prune_to() is called on the cubic schedule while a Trainer runs.
// Masks go into Model::compression (type f32 + mask) and the pruned f32
// values are exactly 0; later stages keep them.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compress/prune.h"
#include "compress/quantize_model.h"

namespace condense::compress {

struct PruneOptions {
  std::string method = "magnitude";  // magnitude | wanda | sparsegpt
  double sparsity = 0.5;             // fraction of each target's elements removed (ignored with an N:M pattern)
  std::string scope = "tensor";      // magnitude only: tensor (each its own threshold) | global
  NmPattern nm;
  std::vector<std::string> targets;  // globs; empty: every linear weight in the blocks
  SparseGptOptions sparsegpt;
  bool needs_calibration() const { return method != "magnitude"; }
};

// s(t) = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3 on [t0, t1], s_i
// before, s_f after (Zhu & Gupta 2017); updated every `every` steps and at t1.
struct GradualSchedule {
  double initial = 0, final_sparsity = 0.5;
  int64_t begin = 0, end = 1, every = 1;
  double at(int64_t t) const;
  bool update_at(int64_t t) const;      // an update is due before step t + 1
  int64_t next_update(int64_t t) const; // the first update step > t (or INT64_MAX)
};

// Checks options against the model (fails with `where` in the message) and
// returns the target names.
std::vector<std::string> prune_targets(const Model& m, const PruneOptions& opt, const std::string& where);

// Raises each target's sparsity to `sparsity` by magnitude (tensor or global
// scope), never restoring a removed weight. Returns per-tensor sparsity.
nlohmann::json magnitude_prune_to(Model& m, const std::vector<std::string>& names, double sparsity, const std::string& scope,
                                  const NmPattern& nm = {});

// {"sparsity": over all of them, "tensors": {name: {sparsity, kept, numel}}}.
nlohmann::json sparsity_report(const Model& m, const std::vector<std::string>& names);

// One-shot pruning; returns per-tensor sparsity (and, when calibrated, the
// output error next to magnitude's at the same sparsity), totals and time.
nlohmann::json prune_model(Model& m, const PruneOptions& opt, const CalibrationSet* calib,
                           const std::function<void(int, int)>& on_progress = {});

}  // namespace condense::compress
