// AWQ (Lin et al. 2023): activation-aware weight quantization. Input channels
// that carry large activations matter more, so weights are scaled up along
// them before rounding (W diag(s)) and the inverse scale is folded into the
// op that produces the input (an RMSNorm weight, v_proj or up_proj), which
// leaves the float model's function unchanged. The exponent alpha in
// s = mean|x|^alpha is searched on a grid for the lowest output error of the
// layers reading that input; then each group's clipping range is searched the
// same way. Output error is measured through the calibration second moments:
// ||X (W - W')^T||^2 / n = sum_rows e^T H e.
#pragma once
#include <vector>

#include "model/quantized_weight.h"

namespace condense::compress {

struct AwqOptions {
  int grid = 20;              // alpha in {0, 1/grid, ..., 1}
  bool clip = true;           // search each group's clipping range
  int clip_grid = 20;         // ratios 1, 1 - 1/clip_grid, ... down to 1 - max_shrink
  double max_shrink = 0.5;
};

struct AwqSearch {
  std::vector<float> scales;  // per input channel; multiply W's columns, divide the input
  double alpha = 0, loss = 0, loss_unscaled = 0;
};

struct AwqWeight {
  const float* w;
  int64_t rows;
  const std::vector<uint64_t>* mask;  // may be null
};

// Searches the per-channel scales for the weights reading one input of `cols`
// channels, from its second moments `h` [cols, cols] and mean |x| `abs_mean`.
AwqSearch awq_search(const QuantScheme& s, const std::vector<AwqWeight>& weights, int64_t cols, const std::vector<double>& h,
                     const std::vector<double>& abs_mean, const AwqOptions& opt);

// Round-to-nearest with each group's range shrunk by the ratio that minimises
// that group's output error e^T H_gg e (AWQ's clipping search). Writes the
// effective values back into w.
WeightCompression quantize_clip_search(const QuantScheme& s, float* w, int64_t rows, int64_t cols, const std::vector<double>& h,
                                       const AwqOptions& opt, const std::vector<uint64_t>& mask = {});

// Output error sum_rows (w - v)^T H (w - v), both [rows, cols].
double output_error(const float* w, const float* v, int64_t rows, int64_t cols, const std::vector<double>& h);

}  // namespace condense::compress
