#include "compress/rtn.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace condense::compress {

GroupParams choose_params_range(const QuantScheme& s, float lo, float hi) {
  GroupParams p;
  if (s.type == DType::F8E4M3 || s.symmetric) {
    const float amax = std::max(std::fabs(lo), std::fabs(hi));
    if (amax == 0.f) return p;
    const float top = s.type == DType::F8E4M3 ? 448.f : float(s.qmax());
    p.scale = round_scale_up(amax / top);
    return p;
  }
  lo = std::min(lo, 0.f);
  hi = std::max(hi, 0.f);
  if (hi == lo) return p;
  p.scale = round_scale_up((hi - lo) / float(s.qmax()));
  p.zero = uint8_t(std::clamp(std::nearbyint(-lo / p.scale), 0.f, float(s.qmax())));
  return p;
}

GroupParams choose_params(const QuantScheme& s, const float* x, int64_t n) {
  float lo = 0, hi = 0;
  for (int64_t i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  return choose_params_range(s, lo, hi);
}

void validate_scheme(const QuantScheme& s, const std::string& where) {
  if (!s.quantized()) fail(where, "no quantization type (int8, int4 or fp8)");
  if (s.type != DType::I8 && s.type != DType::I4 && s.type != DType::F8E4M3) {
    fail(where, std::string("cannot quantize to ") + name(s.type), "Use int8, int4 or fp8");
  }
  if (s.type == DType::F8E4M3 && !s.symmetric) fail(where, "fp8 has no zero point (use symmetric)");
  if (s.granularity == Granularity::Group && s.group < 1) fail(where, "group size must be positive");
}

WeightCompression quantize_rtn(const QuantScheme& s, const float* w, int64_t rows, int64_t cols, const std::vector<uint64_t>& mask,
                               float* w_out) {
  validate_scheme(s, "quantize");
  WeightCompression wc = WeightCompression::blank(s, rows, cols, mask);
  auto kept_range = [&](int64_t r, int64_t c0, int64_t c1, float& lo, float& hi) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t i = r * cols + c;
      if (!wc.kept(i)) continue;
      lo = std::min(lo, w[i]);
      hi = std::max(hi, w[i]);
    }
  };
  if (s.granularity == Granularity::PerTensor) {
    float lo = 0, hi = 0;
    for (int64_t r = 0; r < rows; ++r) kept_range(r, 0, cols, lo, hi);
    const GroupParams p = choose_params_range(s, lo, hi);
    wc.scales[0] = p.scale;
    if (!s.symmetric) wc.zeros[0] = p.zero;
  } else {
    const int64_t gpr = s.groups_per_row(cols), g = s.granularity == Granularity::Group ? s.group : cols;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = 0; k < gpr; ++k) {
        float lo = 0, hi = 0;
        kept_range(r, k * g, std::min(cols, (k + 1) * g), lo, hi);
        const GroupParams p = choose_params_range(s, lo, hi);
        wc.scales[size_t(r * gpr + k)] = p.scale;
        if (!s.symmetric) wc.zeros[size_t(r * gpr + k)] = p.zero;
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c, si = s.scale_index(r, c, cols);
      if (!wc.kept(i)) continue;  // code 0 for pruned elements
      wc.codes[size_t(i)] = quant_value(s, w[i], wc.scales[size_t(si)], s.symmetric ? 0 : wc.zeros[size_t(si)]);
    }
  }
  if (w_out) dequantize(wc, rows, cols, w_out);
  return wc;
}

}  // namespace condense::compress
