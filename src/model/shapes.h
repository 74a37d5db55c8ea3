// Standard model shapes for `condense init`: random weights at realistic sizes
// for benchmarks, since real checkpoints of these sizes are not always at hand.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace condense {

struct NamedShape {
  std::string name;
  ModelConfig config;
};

const std::vector<NamedShape>& standard_shapes();
// Throws listing the known names.
ModelConfig shape_config(const std::string& name);

// Weights ~ N(0, 0.02^2) (projections into the residual stream scaled by
// 1/sqrt(2 * n_layers)), norms = 1; deterministic for a seed on any thread count.
struct Model;
Model random_model(const ModelConfig& config, uint64_t seed);

}  // namespace condense
