// Per-tensor sensitivity for mixed precision: for every target weight and
// every storage option, the mean KL(reference || model) over the windows of a
// text (and the change of the text's NLL) when only that weight is compressed (magnitude-pruned and/or quantized
// by round-to-nearest), every other weight kept as the reference has it; and
// the bytes the runtime holds for that weight in that option and the time its
// kernel takes on one row (decode at batch 1). The mixed-
// precision allocation (compress/bit_allocation.h) reads this table.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compress/quantize_model.h"
#include "model/model.h"

namespace condense::pipeline {

struct StorageOption {
  std::string name;       // e.g. "int4g32", "int8-s50"
  QuantScheme scheme;     // type F32: not quantized
  double sparsity = 0;    // magnitude pruning per tensor before quantizing
  nlohmann::json weights; // the quantize stage's "weights" object (null when not quantized)
};

struct SensitivityRow {
  std::string tensor;
  int64_t rows = 0, cols = 0;
  std::vector<double> kl;     // per option: mean KL in nats per token
  std::vector<double> dnll;   // per option: mean change of the text's NLL per token (may be < 0)
  std::vector<double> bytes;  // per option: the runtime's bytes for this weight
  std::vector<double> us;     // per option: microseconds of its kernel on one row (a decode step's shape)
  double reference_us = 0;    // the same as the reference holds it
};

struct Sensitivity {
  std::vector<StorageOption> options;
  std::vector<SensitivityRow> rows;
  double reference_bytes = 0;  // the targets' bytes as the reference holds them
  int windows = 0, ctx = 0;
  double seconds = 0;
  nlohmann::json to_json() const;
};

// How an option compresses the one weight: round-to-nearest, or GPTQ
// calibrated on `calibration` (the tensor's inputs as the reference model
// computes them), so the table ranks the tensors as the variant's method will
// treat them. Pruning is by magnitude in both.
struct SensitivityMethod {
  std::string method = "rtn";  // rtn | gptq
  compress::GptqOptions gptq;
  const compress::CalibrationSet* calibration = nullptr;  // gptq only
};

// A table to_json() wrote, for these options (fails when they differ).
Sensitivity sensitivity_from_json(const nlohmann::json& j, const std::vector<StorageOption>& options);


// Every position of every window is scored (windows as calibration draws them:
// BOS, then text). Targets are weight-name globs (empty: the blocks' linear
// weights). on_progress(done, total) counts evaluated (tensor, option) pairs.
Sensitivity measure_sensitivity(const Model& m, const std::vector<StorageOption>& options, const std::vector<std::string>& targets,
                                const compress::CalibrationSet& windows, const SensitivityMethod& method = {},
                                const std::function<void(int, int)>& on_progress = {});

}  // namespace condense::pipeline
