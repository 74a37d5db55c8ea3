// Round-to-nearest quantization: the scale (and zero point) of each group from
// its range, then every element rounded to its nearest code. GPTQ and AWQ reuse
// choose_params() for their groups.
#pragma once
#include <cstdint>

#include "model/quantized_weight.h"

namespace condense::compress {

struct GroupParams {
  float scale = 1.f;
  uint8_t zero = 0;
};

// Parameters for n values: symmetric scale amax / qmax (E4M3: amax / 448);
// asymmetric integer scale (max - min) / qmax over a range that includes 0,
// zero = round(-min / scale). The scale is rounded up to an f16-exact value
// (round_scale_up). An all-zero group gets scale 1.
GroupParams choose_params(const QuantScheme& s, const float* x, int64_t n);
GroupParams choose_params_range(const QuantScheme& s, float lo, float hi);

// Quantizes a [rows, cols] matrix. `mask` (optional, rows*cols bits) marks the
// kept elements: pruned ones are excluded from the ranges and stay pruned.
// `w_out` (optional) receives the effective values.
WeightCompression quantize_rtn(const QuantScheme& s, const float* w, int64_t rows, int64_t cols,
                               const std::vector<uint64_t>& mask = {}, float* w_out = nullptr);

// Checks that a scheme is usable (a quantized type, a positive group size,
// fp8 symmetric). Any row length works: the last group may be shorter.
void validate_scheme(const QuantScheme& s, const std::string& where);

}  // namespace condense::compress
