// The calibrate_kv stage: per layer (per tensor or per kv head) scales for an
// fp8 E4M3 or int8 KV cache from the largest |key| and |value| the
// calibration set produces (keys after RoPE, as the cache holds them), so
// amax maps to the format's largest value (448 or 127). Unit scales (no
// calibration) are available to show what calibration buys.
#pragma once
#include <nlohmann/json.hpp>

#include "compress/quantize_model.h"

namespace condense::compress {

struct KvCalibrationOptions {
  DType type = DType::F8E4M3;  // F8E4M3 or I8
  bool per_head = false;
  bool unit_scales = false;    // scales of 1 (fp8 only: a plain cast)
};

// Sets m.kv_cache; returns a report with the scales and amax per layer.
nlohmann::json calibrate_kv(Model& m, const KvCalibrationOptions& opt, const CalibrationSet* calib);

}  // namespace condense::compress
