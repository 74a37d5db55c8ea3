// GPTQ (Frantar et al. 2022): quantizes a weight column by column and spreads
// each column's rounding error over the columns not yet quantized, weighted by
// the inverse Hessian of the layer's reconstruction loss ||X W^T - X Q^T||^2
// (H = E[x x^T] from calibration). Blocks of columns are processed with a
// lazy batched update; the inverse Hessian enters through its upper Cholesky
// factor. Pruned (masked) elements are quantized to 0 and their error is
// compensated like any other (as SparseGPT does), so masks survive.
#pragma once
#include <string>
#include <vector>

#include "model/quantized_weight.h"

namespace condense::compress {

struct GptqOptions {
  double damp = 0.01;     // fraction of mean(diag H) added to the diagonal
  int block = 128;        // columns per lazy-update block
  bool act_order = false; // quantize columns by decreasing H_jj (group scales then come from the original weights)
  bool true_sequential = true;  // within a block, each later site's Hessian sees the already quantized earlier ones
};

struct GptqReport {
  double damp_used = 0;   // final dampening fraction (raised when Cholesky failed)
  int retries = 0;
  int dead_columns = 0;   // inputs that were always 0 in calibration
};

// w: [rows, cols] f32, replaced by the effective (dequantized) values.
// hessian: [cols, cols] (float64, symmetric). mask: optional kept-bits.
WeightCompression gptq_quantize(const QuantScheme& s, float* w, int64_t rows, int64_t cols, const std::vector<double>& hessian,
                                const GptqOptions& opt, const std::vector<uint64_t>& mask = {}, GptqReport* report = nullptr);

// Upper Cholesky factor U of (H + damp*mean(diag H)*I)^-1 (= U^T U), in place
// of `h` (row-major [n, n]); dead (zero-diagonal) entries get 1 first. Raises
// the dampening x10 (up to 1e6 x) while the factorisation fails and reports it.
void inverse_hessian_cholesky(std::vector<double>& h, int64_t n, double damp, GptqReport& report);

}  // namespace condense::compress
