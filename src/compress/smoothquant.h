// W8A8 support: SmoothQuant (Xiao et al. 2023) migrates activation outliers
// into the weights before quantization, per input channel of each block
// site: s_j = max|X_j|^alpha / max|W_:j|^(1 - alpha), folded so the float
// model is unchanged (compress/fold_scales.h); and static fp8 input scales,
// amax / 448 of each site's input over the calibration set, measured layer by
// layer on the model as it is (weights already quantized).
#pragma once
#include <nlohmann/json.hpp>

#include "compress/quantize_model.h"

namespace condense::compress {

// Smooths every foldable site of every block; returns per layer and site the
// largest scale and the activation max before/after.
nlohmann::json smooth_model(Model& m, const CalibrationSet& calib, double alpha);

// Sets m.activations to fp8 E4M3 with static per-layer, per-site scales.
nlohmann::json calibrate_input_scales(Model& m, const CalibrationSet& calib);

}  // namespace condense::compress
