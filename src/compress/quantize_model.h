// The quantize stage on a whole model: chooses the target weights by glob,
// then quantizes them by round-to-nearest, GPTQ or AWQ. GPTQ and AWQ calibrate
// layer by layer (compress/calibration.h), so memory stays bounded by the
// calibration set's hidden states plus one block. Existing pruning masks are
// kept. Quantized weights keep their effective values in the f32 tensors and
// their packed form in Model::compression.
#pragma once
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compress/awq.h"
#include "compress/gptq.h"
#include "core/process_stats.h"
#include "model/model.h"

namespace condense::dist {
class Communicator;
}

namespace condense::compress {

struct CalibrationSet {
  std::vector<int> inputs;  // n_seq windows of seq ids, each starting with BOS
  int n_seq = 0, seq = 0;
  int chunk = 8;            // sequences per block run
  // Data parallel: each rank runs its share of the sequences and the
  // statistics are summed over ranks (null: this process runs them all).
  dist::Communicator* comm = nullptr;
};

// W8A8: the block linears' inputs quantized too (model/activation_quant.h).
struct ActivationOptions {
  DType type = DType::F32;  // F32: weights only; I8: dynamic per token; F8E4M3: static per tensor (calibrated)
  bool smooth = false;      // SmoothQuant before the weights are quantized (needs calibration)
  double alpha = 0.5;       // SmoothQuant migration strength
  bool head = false;        // I8: the LM head's input quantized too (integer head kernels)
};

struct QuantizeOptions {
  QuantScheme scheme;
  ActivationOptions activations;
  std::string method = "rtn";        // rtn | gptq | awq
  std::vector<std::string> targets;  // globs over weight names; empty: every linear weight in the blocks
  // Mixed precision: a scheme per weight name overriding `scheme` (one stage,
  // so GPTQ's true-sequential calibration sees every earlier weight quantized).
  std::map<std::string, QuantScheme> schemes;
  const QuantScheme& scheme_for(const std::string& name) const {
    auto it = schemes.find(name);
    return it == schemes.end() ? scheme : it->second;
  }
  GptqOptions gptq;
  AwqOptions awq;
  // GPTQ, AWQ, SmoothQuant and static fp8 input scales read calibration data.
  bool needs_calibration() const { return method != "rtn" || activations.smooth || activations.type == DType::F8E4M3; }
};

// Weight names the globs select (fnmatch), in model order; fails naming a glob
// that matches nothing, and refuses a tied head (it is the embedding).
std::vector<std::string> select_weights(const Model& m, const std::vector<std::string>& globs, const std::string& where);
// The named weights' tensors, by name.
std::map<std::string, Tensor*> weights_by_name(Model& m, const std::vector<std::string>& names);
// A weight's pruning mask (empty: dense).
const std::vector<uint64_t>& mask_of(const Model& m, const std::string& name);

// Returns a report: per tensor the scheme and the layer-wise output error of
// the method next to round-to-nearest's (when calibrated), calibration memory,
// peak RSS and time. on_progress(done, total) counts tensors.
nlohmann::json quantize_model(Model& m, const QuantizeOptions& opt, const CalibrationSet* calib,
                              const std::function<void(int, int)>& on_progress = {});

}  // namespace condense::compress
